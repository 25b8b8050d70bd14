package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// runState is what a master leaves in master.json for `master status`.
type runState struct {
	PID          int
	Bus          string
	User, Secret string
}

func readRunState(t *testing.T, runDir string) runState {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(runDir, "master.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st runState
	if err := json.Unmarshal(b, &st); err != nil || st.Bus == "" || st.Secret == "" {
		t.Fatalf("master.json %s: %v", b, err)
	}
	return st
}

// busLogin returns the bus user and secret the master handed the child pid,
// from the child's environment.
func busLogin(t *testing.T, pid int) (user, secret string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	for kv := range bytes.SplitSeq(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("YOLK_BUS_USER=")); ok {
			user = string(v)
		}
		if v, ok := bytes.CutPrefix(kv, []byte("YOLK_BUS_SECRET=")); ok {
			secret = string(v)
		}
	}
	if user == "" || secret == "" {
		t.Fatalf("child %d has no bus login in its environment", pid)
	}
	return user, secret
}

// intruder connects to url with nats.go directly; the broker's asynchronous
// errors (refusals) go to the returned channel.
func intruder(t *testing.T, url, user, secret, name string) (*nats.Conn, chan error) {
	t.Helper()
	errs := make(chan error, 100)
	nc, err := nats.Connect(url, nats.UserInfo(user, secret), nats.Name(name), nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatalf("connect as %s: %v", name, err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

// refused waits for the broker's refusal of subject on errs.
func refused(t *testing.T, errs chan error, subject string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case err := <-errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`) {
				return
			}
		case <-deadline:
			t.Fatalf("no permissions violation for %q", subject)
		}
	}
}

// mustNotConnect checks that the bus at url refuses a login.
func mustNotConnect(t *testing.T, url, what string, opts ...nats.Option) {
	t.Helper()
	nc, err := nats.Connect(url, append(opts, nats.NoReconnect())...)
	if err == nil {
		nc.Close()
		t.Fatalf("connect %s succeeded, want it refused", what)
	}
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("connect %s = %v, want an authorization violation", what, err)
	}
}

// noSecrets fails t for each secret that out shows.
func noSecrets(t *testing.T, what, out string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(out, s) {
			t.Errorf("%s shows a secret (%.6s...)", what, s)
		}
	}
}

// privateMode fails t if path can be read, written or entered by anyone but its owner.
func privateMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode() & (fs.ModePerm | fs.ModeType); got != want {
		t.Errorf("%s has mode %v, want %v", path, got, want)
	}
}

// TestForkModeIntruders: against a real master in fork mode, a connection to
// its bus without a credential, with a wrong one or with the revoked one of
// a killed worker is refused; a worker's credential cannot speak as the
// agent, read its inbox or requests, nor answer for it. The master logs each
// refusal with the client, never a secret; no secret of the run (the
// children's, the control credential in master.json) shows in any output;
// the files it makes are its owner's only. The service keeps serving.
func TestForkModeIntruders(t *testing.T) {
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run", "yolk") // made by the master
	sock := filepath.Join(dir, "master.sock")
	m := startMaster(t, "YOLK_RUN_DIR="+runDir, "YOLK_HEALTH_SOCKET="+sock)
	base := m.waitReady(t)
	st := m.status(t)
	agent, workers := st.pids("agent"), st.pids("worker")
	if len(agent) != 1 || len(workers) != 2 {
		t.Fatalf("status: agent %v, workers %v; want 1 and 2", agent, workers)
	}
	state := readRunState(t, runDir)
	agentUser, agentSecret := busLogin(t, agent[0])
	w1User, w1Secret := busLogin(t, workers[0])
	w2User, w2Secret := busLogin(t, workers[1])
	secrets := []string{state.Secret, agentSecret, w1Secret, w2Secret}
	agentID := strconv.Itoa(agent[0])
	// steps, not subtests: they share the master
	step := func(name string, f func()) { t.Logf("step: %s", name); f() }

	step("files", func() {
		privateMode(t, runDir, fs.ModeDir|0o700)
		privateMode(t, filepath.Join(runDir, "master.json"), 0o600)
		privateMode(t, sock, fs.ModeSocket|0o600)
	})

	step("no credential, a wrong one, a revoked one", func() {
		mustNotConnect(t, state.Bus, "without a credential", nats.Name("nobody"))
		m.logs.waitFor(t, 10*time.Second, "refused connection", `"user":""`)
		mustNotConnect(t, state.Bus, "with a wrong secret", nats.UserInfo(w1User, "wrong-"+w1Secret[:8]))
		m.logs.waitFor(t, 10*time.Second, "refused connection", `"user":"`+w1User+`"`, "wrong password")
		mustNotConnect(t, state.Bus, "with the agent's user and a worker's secret", nats.UserInfo(agentUser, w1Secret))
		m.logs.waitFor(t, 10*time.Second, "refused connection", `"user":"`+agentUser+`"`, "wrong password")

		if err := syscall.Kill(workers[1], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "the killed worker replaced", func() bool {
			st := m.status(t)
			return st.allReady(2) && !containsInt(st.pids("worker"), workers[1])
		})
		mustNotConnect(t, state.Bus, "with the credential of a killed worker", nats.UserInfo(w2User, w2Secret))
		m.logs.waitFor(t, 10*time.Second, "refused connection", `"user":"`+w2User+`"`, "unknown user")
	})

	step("a worker's credential cannot act as the agent", func() {
		nc, errs := intruder(t, state.Bus, w1User, w1Secret, "intruder")
		violation := func(kind, subject string) {
			t.Helper()
			refused(t, errs, subject)
			m.logs.waitFor(t, 10*time.Second, kind+` Violation`, `\"`+subject+`\"`, w1User)
		}
		for _, subject := range []string{
			"yolk.app.refresh." + agentID, // a refresh that workers would take for the agent's
			"yolk.all.yolk-ready." + agentID,
			"yolk.master.ready." + agentID,
			"yolk.agent.fetch." + agentID,
			"yolk.inbox." + agentID + ".x", // a reply to a request meant for the agent
		} {
			if err := nc.Publish(subject, []byte(`{"v":1,"kind":"event","event":"x","from":"`+agentID+`","role":"agent"}`)); err != nil {
				t.Fatal(err)
			}
			violation("Publish", subject)
		}
		for _, subject := range []string{">", "yolk.inbox." + agentID + ".>", "yolk.to." + agentID + ".*.*", "yolk.agent.*.*", "yolk.master.*.*"} {
			if _, err := nc.SubscribeSync(subject); err != nil {
				t.Fatal(err)
			}
			violation("Subscription", subject)
		}
	})

	step("it still serves", func() {
		code, body, err := get(http.DefaultClient, base+"/data")
		if err != nil || code != 200 || !strings.Contains(body, `"items"`) {
			t.Errorf("GET /data after the intruders = %d %.80q, %v; want the data", code, body, err)
		}
		if st := m.status(t); !st.allReady(2) {
			t.Errorf("status after the intruders: %+v, want everyone ready", st)
		}
	})

	step("no secret in any output", func() {
		for _, args := range [][]string{{"status"}, {"status", "--json"}} {
			out, err := m.cli(t, args...)
			if err != nil {
				t.Errorf("master %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			noSecrets(t, "master "+strings.Join(args, " "), string(out), secrets...)
		}
		for _, bin := range []string{"master", "agent", "worker", "source"} {
			cmd := exec.Command(filepath.Join(binDir, bin), "--help")
			cmd.Env = []string{"YOLK_BUS_SECRET=" + w1Secret, "YOLK_AGENT_SECRET=" + agentSecret, "YOLK_WORKER_SECRET=" + w2Secret}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("%s --help: %v", bin, err)
			}
			noSecrets(t, bin+" --help", string(out), secrets...)
		}

		// a control credential that the bus refuses: the error shows neither secret
		fake := t.TempDir()
		wrong := "not-the-control-secret-" + state.Secret[:6]
		b, _ := json.Marshal(map[string]any{"pid": state.PID, "bus": state.Bus, "user": state.User, "secret": wrong})
		if err := os.WriteFile(filepath.Join(fake, "master.json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(binDir, "master"), "status")
		cmd.Env = []string{"YOLK_RUN_DIR=" + fake, "GORACE=atexit_sleep_ms=0"}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Authorization Violation") {
			t.Errorf("master status with a wrong control secret = %v %q, want an authorization violation", err, out)
		}
		noSecrets(t, "master status with a wrong control secret", string(out), append(secrets, wrong)...)

		// a worker started by hand with a worker's user and a wrong secret
		cmd = exec.CommandContext(ctx, filepath.Join(binDir, "worker"))
		wrong = "wrong-worker-secret-" + w1Secret[:6]
		cmd.Env = []string{"YOLK_BUS_URL=" + state.Bus, "YOLK_BUS_USER=" + w1User, "YOLK_BUS_SECRET=" + wrong,
			"YOLK_ID=" + strconv.Itoa(workers[0]), "YOLK_LOG_FORMAT=json", "GORACE=atexit_sleep_ms=0"}
		out, err = cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Authorization Violation") {
			t.Errorf("worker with a wrong secret = %v %q, want an authorization violation", err, out)
		}
		noSecrets(t, "a worker with a wrong secret", string(out), append(secrets, wrong)...)
	})

	m.cmd.Process.Signal(syscall.SIGTERM)
	if code := m.wait(t, 20*time.Second); code != 0 {
		t.Errorf("master exit code after SIGTERM = %d, want 0", code)
	}
	// everything the run printed, the children's lines included (the master forwards them)
	noSecrets(t, "the master's log", m.logs.String(), secrets...)
	for _, line := range strings.Split(m.logs.String(), "\n") {
		if strings.Contains(line, "panic") || strings.Contains(line, "DATA RACE") {
			t.Errorf("the master's log: %s", line)
		}
	}
}

// TestExternalModeIntruders: a master in external mode refuses, and logs,
// a worker secret presented as the agent's, and a process that logs in with
// the worker secret under an agent's id; a worker with such an id stops at
// once. The control secret in master.json never shows in the log.
func TestExternalModeIntruders(t *testing.T) {
	x := newExternal(t)
	runDir := filepath.Join(t.TempDir(), "run", "yolk") // made by the master
	master := x.start(t, "master", "master", "YOLK_RUN_DIR="+runDir)
	master.logs.waitFor(t, 20*time.Second, `"msg":"master started"`)
	var busURL string
	for _, kv := range x.env {
		if v, ok := strings.CutPrefix(kv, "YOLK_BUS_URL="); ok {
			busURL = v
		}
	}
	state := readRunState(t, runDir)
	privateMode(t, runDir, fs.ModeDir|0o700)
	privateMode(t, filepath.Join(runDir, "master.json"), 0o600)
	privateMode(t, x.socket("master"), fs.ModeSocket|0o600)

	mustNotConnect(t, busURL, "as the agent with the worker secret", nats.UserInfo("agent", workerSecret), nats.Name("agent-evil"))
	master.logs.waitFor(t, 10*time.Second, "refused connection", `"user":"agent"`, "wrong password")
	mustNotConnect(t, busURL, "with the worker secret under an agent's id", nats.UserInfo("worker", workerSecret), nats.Name("agent-evil"))
	master.logs.waitFor(t, 10*time.Second, "refused connection", `"user":"worker"`, "agent-evil")
	mustNotConnect(t, busURL, "with the worker secret under the master's id", nats.UserInfo("worker", workerSecret), nats.Name(strconv.Itoa(state.PID)))

	// with its own id the worker secret gets a worker's rights, no more
	nc, errs := intruder(t, busURL, "worker", workerSecret, "worker-evil")
	if _, err := nc.SubscribeSync("yolk.agent.*.*"); err != nil {
		t.Fatal(err)
	}
	refused(t, errs, "yolk.agent.*.*")
	master.logs.waitFor(t, 10*time.Second, "Subscription Violation", "worker-evil")

	bad := x.start(t, "worker", "worker-as-agent", "YOLK_ID=agent-evil")
	if code := bad.wait(t, 20*time.Second); code != 2 || !strings.Contains(bad.logs.String(), "YOLK_ID") {
		t.Errorf("worker with YOLK_ID=agent-evil: exit %d, want 2 naming YOLK_ID:\n%s", code, bad.logs)
	}
	noSecrets(t, "the worker with an agent's id", bad.logs.String(), agentSecret, workerSecret)

	master.cmd.Process.Signal(syscall.SIGTERM)
	if code := master.wait(t, 20*time.Second); code != 0 {
		t.Errorf("master exit code after SIGTERM = %d, want 0", code)
	}
	noSecrets(t, "the master's log", master.logs.String(), state.Secret, agentSecret, workerSecret)
}

// TestImageRunsAsNonRoot: every image the Dockerfile can build ends with a
// USER that is not root (compose uses the image's; deploytest/k8s/manifests_test.go
// checks runAsNonRoot), and compose.yaml sets no other user.
func TestImageRunsAsNonRoot(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	from := regexp.MustCompile(`(?im)^FROM\s+(\S+)(?:\s+AS\s+(\S+))?`)
	user := regexp.MustCompile(`(?im)^USER\s+(\S+)`)
	stages := from.FindAllStringSubmatchIndex(string(b), -1)
	if len(stages) == 0 {
		t.Fatal("the Dockerfile has no FROM")
	}
	images := 0
	for i, s := range stages {
		end := len(b)
		if i+1 < len(stages) {
			end = stages[i+1][0]
		}
		stage := string(b[s[0]:end])
		name := "the last stage"
		if s[4] >= 0 {
			name = "stage " + string(b[s[4]:s[5]])
		}
		if strings.Contains(strings.ToLower(name), "build") {
			continue // a builder stage, not an image that runs
		}
		images++
		us := user.FindAllStringSubmatch(stage, -1)
		if len(us) == 0 {
			t.Errorf("%s of the Dockerfile has no USER: it would run as root", name)
			continue
		}
		u := us[len(us)-1][1]
		uid, gid, _ := strings.Cut(u, ":")
		for _, id := range []string{uid, gid} {
			if n, err := strconv.Atoi(id); id == "root" || (err == nil && n == 0) || (id != "" && err != nil) {
				t.Errorf("%s of the Dockerfile runs as USER %s, want a non-zero numeric uid:gid", name, u)
			}
		}
	}
	if images < 2 {
		t.Errorf("the Dockerfile has %d runnable stages, want the prebuilt one and the last", images)
	}
	compose, err := os.ReadFile("../../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^\s+user:\s*(\S+)`).FindStringSubmatch(string(compose)); m != nil {
		t.Errorf("compose.yaml sets user %s; the image's non-root user should stay", m[1])
	}
}
