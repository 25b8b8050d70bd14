// Package e2e drives real yolk processes: TestMain builds the binaries once, and each
// test starts a real master and checks what a user sees: HTTP answers, restarts,
// exit codes, and no process left behind.
package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var binDir string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "yolk-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	// yolkfault: the test-only faults of the worker runtime (fault.go at the root)
	args := []string{"build", "-tags", "yolkfault", "-o", dir + "/"}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "../../cmd/master", "../../cmd/agent", "../../cmd/worker", "../../cmd/source", "../../examples/counter", "../../examples/ticker")
	cmd := exec.Command("go", args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build binaries:", err)
		return 1
	}
	// The real NATS server, from the module in go.mod, for the fleet's cluster.
	cmd = exec.Command("go", "build", "-o", dir+"/nats-server", "github.com/nats-io/nats-server/v2")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build nats-server:", err)
		return 1
	}
	binDir = dir
	return m.Run()
}

// logs collects a process's stderr, one JSON record per line, and lets a test
// wait for a record.
type logs struct {
	mu      sync.Mutex
	lines   []string
	changed chan struct{}
}

func newLogs() *logs { return &logs{changed: make(chan struct{})} }

func (l *logs) add(line string) {
	l.mu.Lock()
	l.lines = append(l.lines, line)
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// waitFor waits until a line contains every one of subs, and returns it.
func (l *logs) waitFor(t *testing.T, timeout time.Duration, subs ...string) string {
	t.Helper()
	deadline := time.After(timeout)
	seen := 0
	for {
		l.mu.Lock()
		for ; seen < len(l.lines); seen++ {
			if containsAll(l.lines[seen], subs) {
				line := l.lines[seen]
				l.mu.Unlock()
				return line
			}
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no log line with %q within %v; log:\n%s", subs, timeout, l)
			return ""
		}
	}
}

// forget removes the first line equal to line.
func (l *logs) forget(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if i := slices.Index(l.lines, line); i >= 0 {
		l.lines[i] = ""
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// process is a running binary whose stderr (JSON records) the test reads.
type process struct {
	cmd  *exec.Cmd
	env  []string
	logs *logs
	done chan struct{}
}

func startProcess(t *testing.T, name string, env []string, args ...string) *process {
	t.Helper()
	p := &process{env: env, logs: newLogs(), done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(binDir, name), args...)
	p.cmd.Env = env
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.logs.add(sc.Text())
		}
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", name, p.logs)
		}
	})
	return p
}

// wait waits for the process to exit and returns its exit code.
func (p *process) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s still running %v later", p.cmd.Path, timeout)
	}
	return p.cmd.ProcessState.ExitCode()
}

// source is a running bin/source.
type source struct {
	*process
	url     string // http://127.0.0.1:port
	natsURL string
}

// startSource starts bin/source on free ports (or the addresses env gives).
func startSource(t *testing.T, env ...string) *source {
	t.Helper()
	base := []string{"SOURCE_ADDR=127.0.0.1:0", "SOURCE_NATS_ADDR=127.0.0.1:0", "YOLK_LOG_FORMAT=json", "GORACE=atexit_sleep_ms=0"}
	p := startProcess(t, "source", append(base, env...))
	line := p.logs.waitFor(t, 20*time.Second, `"msg":"source ready"`)
	var rec struct{ HTTP, NATS string }
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.HTTP == "" {
		t.Fatalf("source ready line without addresses: %s", line)
	}
	return &source{process: p, url: "http://" + rec.HTTP, natsURL: "nats://" + rec.NATS}
}

// master is a running master process.
type master struct {
	*process
	runDir string
	src    *source
	bin    string // the binary of its status and reload commands; empty means master
}

// startMaster starts bin/master with 2 workers on a free port, and a source for
// it, unless env says otherwise (a later entry wins).
func startMaster(t *testing.T, env ...string) *master {
	t.Helper()
	return startMasterWith(t, startSource(t), env...)
}

func startMasterWith(t *testing.T, src *source, env ...string) *master {
	t.Helper()
	runDir := t.TempDir()
	base := []string{
		"PATH=" + os.Getenv("PATH"),
		"YOLK_RUN_DIR=" + runDir,
		"YOLK_HTTP_ADDR=127.0.0.1:0",
		"YOLK_WORKERS=2",
		"YOLK_SHUTDOWN_TIMEOUT=5s",
		"YOLK_READY_TIMEOUT=10s",
		"YOLK_LOG_FORMAT=json",
		"YOLK_SOURCE_URL=" + src.url,
		"YOLK_PUSH_URL=" + src.natsURL,
		"YOLK_FETCH_TIMEOUT=1s",
		"GORACE=atexit_sleep_ms=0", // a -race binary otherwise lingers 1s at exit
	}
	p := startProcess(t, "master", append(base, env...))
	return &master{process: p, runDir: runDir, src: src}
}

// waitReady waits for the master's "yolk ready" and returns the HTTP base URL.
func (m *master) waitReady(t *testing.T) string {
	t.Helper()
	line := m.logs.waitFor(t, 30*time.Second, `"msg":"yolk ready"`)
	var rec struct{ Addr string }
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Addr == "" {
		t.Fatalf("yolk ready line without addr: %s", line)
	}
	return "http://" + rec.Addr
}

type proc struct {
	Role     string
	PID      int
	State    string
	Started  time.Time
	Restarts int
	Wire     int // the bus's wire version it sends, from its heartbeat
	Cache    *struct{ Version, By string }
}

type statusJSON struct {
	Master    proc
	Reloading bool
	Children  []proc
}

// status runs `master status --json` against this master.
func (m *master) status(t *testing.T) statusJSON {
	t.Helper()
	out, err := m.cli(t, "status", "--json")
	if err != nil {
		t.Fatalf("master status: %v\n%s", err, out)
	}
	var st statusJSON
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("master status output: %v\n%s", err, out)
	}
	return st
}

func (m *master) cli(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, cmp.Or(m.bin, "master")), args...)
	cmd.Env = m.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// children returns the pids of the ready children with that role.
func (st statusJSON) pids(role string) []int {
	var pids []int
	for _, c := range st.Children {
		if c.Role == role {
			pids = append(pids, c.PID)
		}
	}
	return pids
}

func (st statusJSON) allReady(workers int) bool {
	agents, ready := 0, 0
	for _, c := range st.Children {
		if c.State != "ready" {
			return false
		}
		if c.Role == "agent" {
			agents++
		} else {
			ready++
		}
	}
	return agents == 1 && ready == workers
}

// eventually polls cond every 20ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// processGone reports whether pid has exited (a zombie counts as gone: it runs no code).
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// the state follows the command name in parentheses
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] == 'Z' || b[i+2] == 'X'
	}
	return false
}

func get(client *http.Client, url string) (int, string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
