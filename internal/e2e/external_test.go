package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Secrets of the external-mode tests: none may appear in any output.
const (
	agentSecret  = "agent-s3cret-7f1e9a"
	workerSecret = "worker-s3cret-c40d2b"
	wrongSecret  = "wrong-s3cret-95aa01"
)

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// external is a project run as compose or Kubernetes runs it: a master in
// external mode, and an agent and workers started on their own.
type external struct {
	src     *source
	env     []string // every process's environment but its health socket
	sockDir string
	http    string // the workers' shared address, http://127.0.0.1:port
	procs   []*process
}

// newExternal is a project of the cache application, with a source of its own.
func newExternal(t *testing.T) *external {
	t.Helper()
	src := startSource(t)
	x := newExternalOf(t, "YOLK_SOURCE_URL="+src.url, "YOLK_PUSH_URL="+src.natsURL, "YOLK_FETCH_TIMEOUT=1s")
	x.src = src
	return x
}

// newExternalOf is a project of any application, its environment env added.
func newExternalOf(t *testing.T, env ...string) *external {
	t.Helper()
	httpPort := freePort(t)
	x := &external{
		sockDir: t.TempDir(),
		http:    "http://127.0.0.1:" + strconv.Itoa(httpPort),
		env: []string{
			"PATH=" + os.Getenv("PATH"),
			"YOLK_MODE=external",
			"YOLK_BUS_URL=nats://127.0.0.1:" + strconv.Itoa(freePort(t)),
			"YOLK_AGENT_SECRET=" + agentSecret,
			"YOLK_WORKER_SECRET=" + workerSecret,
			"YOLK_RUN_DIR=" + t.TempDir(),
			"YOLK_HTTP_ADDR=127.0.0.1:" + strconv.Itoa(httpPort),
			"YOLK_SHUTDOWN_TIMEOUT=5s",
			"YOLK_READY_TIMEOUT=5s",
			"YOLK_LOG_FORMAT=json",
			"GORACE=atexit_sleep_ms=0",
		},
	}
	x.env = append(x.env, env...)
	return x
}

// socket is the health socket of the process called name.
func (x *external) socket(name string) string { return filepath.Join(x.sockDir, name+".sock") }

// start starts bin/<bin> as the process called name, with env added.
func (x *external) start(t *testing.T, bin, name string, env ...string) *process {
	t.Helper()
	return x.startArgs(t, bin, nil, name, env...)
}

// startArgs is start with command-line arguments.
func (x *external) startArgs(t *testing.T, bin string, args []string, name string, env ...string) *process {
	t.Helper()
	e := append(slices.Clone(x.env), "YOLK_HEALTH_SOCKET="+x.socket(name))
	p := startProcess(t, bin, append(e, env...), args...)
	x.procs = append(x.procs, p)
	return p
}

func (x *external) startMaster(t *testing.T) *process {
	t.Helper()
	p := x.start(t, "master", "master")
	p.logs.waitFor(t, 20*time.Second, `"msg":"master started"`)
	return p
}

// startMember starts an agent or a worker and returns it with its id, once it
// says it is ready.
func (x *external) startMember(t *testing.T, bin, name string, env ...string) (*process, string) {
	t.Helper()
	p := x.start(t, bin, name, env...)
	return p, memberID(t, p, bin)
}

// memberID waits until an agent or a worker says it is ready, and returns its id.
func memberID(t *testing.T, p *process, bin string) string {
	t.Helper()
	line := p.logs.waitFor(t, 30*time.Second, `"msg":"`+bin+` ready"`)
	var rec struct{ ID string }
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.ID == "" {
		t.Fatalf("%s ready line without an id: %s", bin, line)
	}
	return rec.ID
}

// healthcheck runs `<bin> healthcheck [--ready]` against socket and returns its
// exit code and output.
func healthcheck(t *testing.T, bin, socket string, ready bool) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	args := []string{"healthcheck"}
	if ready {
		args = append(args, "--ready")
	}
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, bin), args...)
	cmd.Env = []string{"YOLK_MODE=external", "YOLK_HEALTH_SOCKET=" + socket, "GORACE=atexit_sleep_ms=0"}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("%s healthcheck: %v", bin, err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

type extMember struct {
	Role, ID, State string
	Started         time.Time
	Cache           *struct{ Version, By string }
}

type extStatus struct {
	Master   extMember
	Mode     string
	Children []extMember
}

// status runs `master status --json` and returns the ready members by id.
func (x *external) status(t *testing.T) (extStatus, map[string]extMember) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "master"), "status", "--json")
	cmd.Env = x.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("master status: %v\n%s", err, out.String())
	}
	for _, s := range []string{agentSecret, workerSecret} {
		if strings.Contains(out.String(), s) {
			t.Errorf("master status shows a secret")
		}
	}
	var st extStatus
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatalf("master status output: %v\n%s", err, out.String())
	}
	ready := make(map[string]extMember)
	for _, c := range st.Children {
		if c.State == "ready" {
			ready[c.ID] = c
		}
	}
	return st, ready
}

// hasExactly reports whether members are exactly the processes of want (id to role).
func hasExactly(members map[string]extMember, want map[string]string) bool {
	if len(members) != len(want) {
		return false
	}
	for id, role := range want {
		if m, ok := members[id]; !ok || m.Role != role {
			return false
		}
	}
	return true
}

// servedBy asks the shared port for path until every worker in ids has answered,
// and returns the last body each one served.
func (x *external) servedBy(t *testing.T, path string, ids ...string) map[string]string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	bodies := make(map[string]string)
	eventually(t, 10*time.Second, "every worker answers on the shared port", func() bool {
		resp, err := client.Get(x.http + path)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		if resp.StatusCode == 200 {
			bodies[resp.Header.Get("X-Yolk-Worker")] = b.String()
		}
		for _, id := range ids {
			if _, ok := bodies[id]; !ok {
				return false
			}
		}
		return true
	})
	return bodies
}

func TestExternalMode(t *testing.T) {
	x := newExternal(t)
	// The agent may start before the master (a platform promises no order): it is
	// alive, not ready, and waits.
	agent := x.start(t, "agent", "agent", "YOLK_ID=agent-e2e")
	eventually(t, 10*time.Second, "the agent alive before the master", func() bool {
		code, _ := healthcheck(t, "agent", x.socket("agent"), false)
		return code == 0
	})
	if code, out := healthcheck(t, "agent", x.socket("agent"), true); code != 1 {
		t.Errorf("agent healthcheck --ready before the master = %d %q, want 1", code, out)
	}
	master := x.startMaster(t)
	agentID := memberID(t, agent, "agent")
	if code, out := healthcheck(t, "master", x.socket("master"), true); code != 1 || !strings.Contains(out, "no worker is ready") {
		t.Errorf("master healthcheck --ready with no worker = %d %q, want 1 saying no worker is ready", code, out)
	}
	w1, w1ID := x.startMember(t, "worker", "worker-1")
	w2, w2ID := x.startMember(t, "worker", "worker-2")
	if agentID != "agent-e2e" || !strings.HasPrefix(w1ID, "worker-") || w1ID == w2ID {
		t.Fatalf("ids agent %q, workers %q %q; want agent-e2e and two distinct worker-<random>", agentID, w1ID, w2ID)
	}
	everyone := map[string]string{agentID: "agent", w1ID: "worker", w2ID: "worker"}
	// steps, not subtests: the processes they start belong to the whole test
	step := func(name string, f func()) { t.Logf("step: %s", name); f() }

	step("shared port", func() {
		for id, body := range x.servedBy(t, "/data", w1ID, w2ID) {
			if !strings.Contains(body, `"items"`) {
				t.Errorf("GET /data from %s = %q, want the data set", id, body)
			}
		}
	})

	step("status", func() {
		eventually(t, 5*time.Second, "the agent and both workers ready in master status", func() bool {
			_, ms := x.status(t)
			return hasExactly(ms, everyone)
		})
		st, ms := x.status(t)
		if st.Mode != "external" || st.Master.State != "ready" {
			t.Errorf("status mode %q, master state %q; want external, ready", st.Mode, st.Master.State)
		}
		for _, id := range []string{w1ID, w2ID} {
			if c := ms[id].Cache; c == nil || c.Version == "" {
				t.Errorf("status of worker %s has no cache version: %+v", id, ms[id])
			}
		}
		if ms[agentID].Started.IsZero() {
			t.Errorf("status of the agent has no uptime: %+v", ms[agentID])
		}
	})

	step("healthcheck", func() {
		for name, bin := range map[string]string{"master": "master", "agent": "agent", "worker-1": "worker", "worker-2": "worker"} {
			for _, ready := range []bool{false, true} {
				if code, out := healthcheck(t, bin, x.socket(name), ready); code != 0 {
					t.Errorf("%s healthcheck (ready %v) on %s = %d %q, want 0", bin, ready, name, code, out)
				}
			}
		}
		// a socket file with nothing behind it, and no socket at all
		dead := filepath.Join(x.sockDir, "dead.sock")
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: dead, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		ln.SetUnlinkOnClose(false)
		ln.Close()
		for _, sock := range []string{dead, filepath.Join(x.sockDir, "none.sock")} {
			for _, bin := range []string{"master", "agent", "worker"} {
				if code, out := healthcheck(t, bin, sock, true); code != 1 || !strings.Contains(out, sock) {
					t.Errorf("%s healthcheck --ready on %s = %d %q, want 1 naming the socket", bin, filepath.Base(sock), code, out)
				}
			}
		}
	})

	step("wrong secret", func() {
		bad := x.start(t, "worker", "bad", "YOLK_WORKER_SECRET="+wrongSecret)
		if code := bad.wait(t, 20*time.Second); code == 0 {
			t.Errorf("worker with a wrong secret exited 0, want non-zero")
		}
		if !strings.Contains(strings.ToLower(bad.logs.String()), "authorization violation") {
			t.Errorf("worker with a wrong secret does not say it was refused:\n%s", bad.logs)
		}
		master.logs.waitFor(t, 5*time.Second, "refused connection", `"user":"worker"`)
		if _, ms := x.status(t); !hasExactly(ms, everyone) {
			t.Errorf("status after a refused worker = %v, want only %v", ms, everyone)
		}
	})

	step("master restart", func() {
		master.cmd.Process.Signal(syscall.SIGTERM)
		if code := master.wait(t, 15*time.Second); code != 0 {
			t.Fatalf("master exit code after SIGTERM = %d, want 0", code)
		}
		if _, err := os.Stat(x.socket("master")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("master's health socket after its exit: %v, want it removed", err)
		}
		// nothing exits because the master is gone; the workers keep serving
		x.servedBy(t, "/data", w1ID, w2ID)
		for _, p := range []*process{agent, w1, w2} {
			select {
			case <-p.done:
				t.Fatalf("%s exited when the master stopped:\n%s", p.cmd.Path, p.logs)
			default:
			}
		}
		restarted := time.Now()
		master = x.startMaster(t)
		took := eventually(t, 10*time.Second, "the agent and both workers back in master status", func() bool {
			_, ms := x.status(t)
			return hasExactly(ms, everyone)
		})
		t.Logf("master restarted: every member back in status %v after it started (%v after the restart began)",
			took, time.Since(restarted).Round(time.Millisecond))
		if code, out := healthcheck(t, "master", x.socket("master"), true); code != 0 {
			t.Errorf("master healthcheck --ready after its restart = %d %q, want 0", code, out)
		}

		version := x.src.put(t, "greeting", `"after the restart"`)
		eventually(t, 10*time.Second, "both workers on version "+version+" in status", func() bool {
			_, ms := x.status(t)
			for _, id := range []string{w1ID, w2ID} {
				if c := ms[id].Cache; c == nil || c.Version != version {
					return false
				}
			}
			return true
		})
		for id, body := range x.servedBy(t, "/data/greeting", w1ID, w2ID) {
			if body != `"after the restart"` {
				t.Errorf("GET /data/greeting from %s = %q, want the new value", id, body)
			}
		}
	})

	step("kill a worker", func() {
		w2.cmd.Process.Signal(syscall.SIGKILL)
		took := eventually(t, 5*time.Second, "the killed worker gone from status", func() bool {
			_, ms := x.status(t)
			return hasExactly(ms, map[string]string{agentID: "agent", w1ID: "worker"})
		})
		t.Logf("worker killed: gone from status in %v", took)
		if code, out := healthcheck(t, "master", x.socket("master"), true); code != 0 {
			t.Errorf("master healthcheck --ready with one worker left = %d %q, want 0", code, out)
		}
	})

	step("graceful stop", func() {
		w1.cmd.Process.Signal(syscall.SIGTERM)
		if code := w1.wait(t, 15*time.Second); code != 0 {
			t.Errorf("worker exit code after SIGTERM = %d, want 0", code)
		}
		if _, err := os.Stat(x.socket("worker-1")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("worker's health socket after its exit: %v, want it removed", err)
		}
		eventually(t, 5*time.Second, "master not ready without a worker", func() bool {
			code, out := healthcheck(t, "master", x.socket("master"), true)
			return code == 1 && strings.Contains(out, "no worker is ready")
		})
		agent.cmd.Process.Signal(syscall.SIGTERM)
		if code := agent.wait(t, 15*time.Second); code != 0 {
			t.Errorf("agent exit code after SIGTERM = %d, want 0", code)
		}
	})

	for _, p := range x.procs {
		out := p.logs.String()
		for _, s := range []string{agentSecret, workerSecret, wrongSecret} {
			if strings.Contains(out, s) {
				t.Errorf("a secret (%.8s...) appears in the output of %s", s, p.cmd.Path)
			}
		}
	}
}

func TestExternalModeConfig(t *testing.T) {
	long := "/tmp/" + strings.Repeat("x", 120) + ".sock"
	tests := []struct {
		bin  string
		env  []string // the names of the variables are the subtest's name; never the values
		want string   // named in the error
	}{
		{"master", []string{"YOLK_WORKER_SECRET=" + workerSecret}, "YOLK_AGENT_SECRET"},
		{"master", []string{"YOLK_AGENT_SECRET=" + agentSecret}, "YOLK_WORKER_SECRET"},
		{"master", []string{"YOLK_AGENT_SECRET=", "YOLK_WORKER_SECRET=" + workerSecret}, "YOLK_AGENT_SECRET"},
		{"master", []string{"YOLK_AGENT_SECRET=" + agentSecret, "YOLK_WORKER_SECRET=" + agentSecret}, "YOLK_WORKER_SECRET"},
		{"agent", []string{"YOLK_WORKER_SECRET=" + workerSecret}, "YOLK_AGENT_SECRET"},
		{"worker", []string{"YOLK_AGENT_SECRET=" + agentSecret}, "YOLK_WORKER_SECRET"},
		{"worker", []string{"YOLK_WORKER_SECRET=" + workerSecret, "YOLK_ID=a.b"}, "YOLK_ID"},
		{"agent", []string{"YOLK_AGENT_SECRET=" + agentSecret, "YOLK_HEALTH_SOCKET=" + long}, "YOLK_HEALTH_SOCKET"},
		{"worker", []string{"YOLK_MODE=pod"}, "YOLK_MODE"},
		{"master", []string{"YOLK_AGENT_SECRET=" + agentSecret, "YOLK_WORKER_SECRET=" + workerSecret, "YOLK_BUS_URL=nats://0.0.0.0:4222"}, "YOLK_BUS_URL"},
	}
	for _, tt := range tests {
		var names []string
		for _, kv := range tt.env {
			k, v, _ := strings.Cut(kv, "=")
			if v == "" {
				k += "(empty)"
			}
			names = append(names, k)
		}
		t.Run(tt.bin+" "+strings.Join(names, " "), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, filepath.Join(binDir, tt.bin))
			cmd.Env = append([]string{"YOLK_MODE=external", "YOLK_RUN_DIR=" + t.TempDir(), "GORACE=atexit_sleep_ms=0"}, tt.env...)
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != 2 {
				t.Errorf("exit %d, want 2\n%s", code, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("error %q does not name %s", out, tt.want)
			}
			for _, s := range []string{agentSecret, workerSecret} {
				if strings.Contains(string(out), s) {
					t.Errorf("error %q shows a secret", out)
				}
			}
		})
	}
}

func TestExternalHelp(t *testing.T) {
	want := map[string][]string{
		"master": {"YOLK_MODE", "YOLK_BUS_URL", "YOLK_AGENT_SECRET", "YOLK_WORKER_SECRET", "YOLK_HEALTH_SOCKET", "healthcheck"},
		"agent":  {"YOLK_MODE", "YOLK_BUS_URL", "YOLK_ID", "YOLK_AGENT_SECRET", "YOLK_HEALTH_SOCKET", "healthcheck"},
		"worker": {"YOLK_MODE", "YOLK_BUS_URL", "YOLK_ID", "YOLK_WORKER_SECRET", "YOLK_HEALTH_SOCKET", "YOLK_HTTP_ADDR", "healthcheck"},
	}
	for bin, vars := range want {
		cmd := exec.Command(filepath.Join(binDir, bin), "--help")
		cmd.Env = []string{"YOLK_AGENT_SECRET=" + agentSecret, "YOLK_WORKER_SECRET=" + workerSecret, "GORACE=atexit_sleep_ms=0"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s --help: %v", bin, err)
		}
		for _, v := range vars {
			if !strings.Contains(string(out), v) {
				t.Errorf("%s --help does not list %s:\n%s", bin, v, out)
			}
		}
		if strings.Contains(string(out), agentSecret) || strings.Contains(string(out), workerSecret) {
			t.Errorf("%s --help shows a secret", bin)
		}
	}
}

// TestForkModeHealthSocket: in fork mode the health socket is off unless set;
// set, the master answers it, and its children do not inherit it.
func TestForkModeHealthSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "master.sock")
	m := startMaster(t, "YOLK_HEALTH_SOCKET="+sock)
	m.waitReady(t)
	eventually(t, 5*time.Second, "the fork-mode master ready on its health socket", func() bool {
		code, _ := healthcheck(t, "master", sock, true)
		return code == 0
	})
	if code, out := healthcheck(t, "master", sock, false); code != 0 {
		t.Errorf("master healthcheck = %d %q, want 0", code, out)
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	if code := m.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("master exit code after SIGTERM = %d, want 0", code)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("health socket after the master's exit: %v, want it removed", err)
	}
	cmd := exec.Command(filepath.Join(binDir, "master"), "healthcheck")
	cmd.Env = []string{"YOLK_MODE=fork"}
	if out, err := cmd.CombinedOutput(); err == nil || cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "YOLK_HEALTH_SOCKET") {
		t.Errorf("master healthcheck in fork mode without a socket = %v %q, want exit 1 naming YOLK_HEALTH_SOCKET", err, out)
	}
}
