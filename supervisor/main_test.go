package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/yolkgo/yolk/internal/lifeline"
)

// envChild makes the test binary act as a child: the value names the scenario.
const envChild = "YOLK_TEST_CHILD"

func TestMain(m *testing.M) {
	if sc := os.Getenv(envChild); sc != "" {
		os.Exit(runChild(sc))
	}
	os.Exit(m.Run())
}

// runChild plays one child scenario and returns its exit code. Every
// scenario that blocks also ends when the lifeline closes, so no child
// outlives a failed test.
func runChild(scenario string) int {
	life := lifeline.Watch(os.Environ())
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	say := func(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }
	switch scenario {
	case "ready": // ready, then exits 0 on SIGTERM or at the lifeline's end
		say("role=%s lifeline=%s fd4=%s", os.Getenv(EnvRole), os.Getenv(EnvLifelineFD), readFD4())
		say("ready")
		select {
		case <-term:
			say("term")
		case <-life:
		}
		return 0
	case "exit3":
		say("exit3: about to fail")
		return 3
	case "crashloop":
		for i := 1; i <= 25; i++ {
			say("crash detail %d", i)
		}
		return 2
	case "ready-exit": // ready, then exits 2 at once
		say("ready")
		return 2
	case "never-ready":
		say("warming up for ever")
		select {
		case <-term:
		case <-life:
		}
		return 0
	case "ignore-quit": // ready; says quit on SIGQUIT and keeps running
		quit := make(chan os.Signal, 1)
		signal.Notify(quit, syscall.SIGQUIT)
		say("ready")
		for {
			select {
			case <-quit:
				say("quit")
			case <-term:
				say("term")
				return 0
			case <-life:
				return 0
			}
		}
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		say("ready")
		<-life
		return 0
	case "lifeline-marker": // writes a marker file named by its pid when the lifeline ends
		signal.Ignore(syscall.SIGTERM)
		say("ready")
		<-life
		name := filepath.Join(os.Getenv("YOLK_TEST_DIR"), strconv.Itoa(os.Getpid()))
		if err := os.WriteFile(name, []byte("eof"), 0o600); err != nil {
			return 1
		}
		return 0
	case "mini-master":
		return runMiniMaster()
	}
	say("unknown scenario %q", scenario)
	return 99
}

// readFD4 returns what fd 4 holds when the test passed a file there.
func readFD4() string {
	if os.Getenv("YOLK_TEST_FD4") == "" {
		return "none"
	}
	f := os.NewFile(4, "fd4")
	buf := make([]byte, 64)
	n, err := f.ReadAt(buf, 0)
	if n == 0 {
		return "error: " + fmt.Sprint(err)
	}
	return string(buf[:n])
}

// runMiniMaster is a master in its own process: it supervises children that
// write a marker file when their lifeline ends, prints their pids on stdout
// once all are ready and runs until it is killed. Pdeathsig is off so that
// only the lifeline can tell the children their master died.
func runMiniMaster() int {
	env := append(childEnv(), envChild+"=lifeline-marker")
	var s *Supervisor
	s = New(Config{
		Agent:   Spec{Path: os.Args[0], Env: env},
		Worker:  Spec{Path: os.Args[0], Env: env},
		Workers: 2,
		Output: func(_ string, pid int, line []byte) {
			if string(line) == "ready" {
				s.Ready(pid)
			}
		},
		OnAllReady: func() {
			var pids []string
			for _, st := range s.Status() {
				pids = append(pids, strconv.Itoa(st.PID))
			}
			fmt.Printf("pids %s\n", strings.Join(pids, " "))
		},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	s.pdeathsig = 0
	if err := s.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// childEnv is the environment for a child: this one, without the race
// detector's one-second sleep at exit, which would make every stop slow.
func childEnv() []string {
	return append(os.Environ(), "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
}

// syncBuffer is a bytes.Buffer safe for concurrent use, for captured logs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness runs a Supervisor whose children are this test binary. scenario
// picks each start's scenario from the role and how many children of that
// role were started before (0 for the first).
type harness struct {
	t        *testing.T
	s        *Supervisor
	log      syncBuffer
	scenario func(role string, n int) string

	mu      sync.Mutex
	starts  map[string]int
	events  []string // "start <role> <pid>", "line <pid> <text>", "exit <role> <pid>"
	exits   []string // "<role> <pid>"
	started []int
	plays   map[int]string // each started child's scenario, by pid
	ready   chan struct{}  // closed by OnAllReady

	cancel context.CancelFunc
	done   chan error
}

// newHarness builds the Supervisor; edit adjusts the config before New.
func newHarness(t *testing.T, workers int, scenario func(role string, n int) string, edit func(*Config)) *harness {
	h := &harness{t: t, scenario: scenario, starts: map[string]int{}, ready: make(chan struct{})}
	cfg := Config{
		Agent:           Spec{Path: os.Args[0], Env: childEnv()},
		Worker:          Spec{Path: os.Args[0], Env: childEnv()},
		Workers:         workers,
		ReadyTimeout:    20 * time.Second,
		ShutdownTimeout: 20 * time.Second,
		BackoffMin:      10 * time.Millisecond,
		BackoffMax:      100 * time.Millisecond,
		Prepare:         h.prepare,
		Output:          h.output,
		OnAllReady:      func() { close(h.ready) },
		Logger:          slog.New(slog.NewTextHandler(&h.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if edit != nil {
		edit(&cfg)
	}
	h.s = New(cfg)
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("YOLK_TEST_LOG") != "" {
			t.Logf("supervisor log:\n%s", h.log.String())
		}
	})
	return h
}

// playing returns the pid of the started child that plays scenario: the n
// of a harness's scenario func counts starts, which may come in any order.
func (h *harness) playing(scenario string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	for pid, play := range h.plays {
		if play == scenario {
			return pid
		}
	}
	h.t.Fatalf("no child plays %q", scenario)
	return 0
}

func (h *harness) prepare(role string) ([]string, func(int), func(), error) {
	h.mu.Lock()
	n := h.starts[role]
	h.starts[role]++
	play := h.scenario(role, n)
	env := []string{envChild + "=" + play}
	h.mu.Unlock()
	var pid int // set by started, read by exited, which is called after it
	started := func(p int) {
		pid = p
		h.mu.Lock()
		defer h.mu.Unlock()
		h.started = append(h.started, p)
		if h.plays == nil {
			h.plays = make(map[int]string)
		}
		h.plays[p] = play
		h.events = append(h.events, fmt.Sprintf("start %s %d", role, p))
	}
	exited := func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.exits = append(h.exits, fmt.Sprintf("%s %d", role, pid))
		h.events = append(h.events, fmt.Sprintf("exit %s %d", role, pid))
	}
	return env, started, exited, nil
}

func (h *harness) output(role string, pid int, line []byte) {
	h.mu.Lock()
	h.events = append(h.events, fmt.Sprintf("line %d %s", pid, line))
	h.mu.Unlock()
	if string(line) == "ready" {
		h.s.Ready(pid)
	}
}

// run starts Run in a goroutine; stop (or the test's end) cancels it and
// waits for it.
func (h *harness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.s.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(60 * time.Second):
			h.t.Errorf("Run did not return after cancel")
		}
	})
}

// wait returns Run's error, failing the test after d.
func (h *harness) wait(d time.Duration) error {
	h.t.Helper()
	select {
	case err := <-h.done:
		h.done <- err // for the cleanup
		return err
	case <-time.After(d):
		h.t.Fatalf("Run did not return within %s", d)
		return nil
	}
}

func (h *harness) waitAllReady() {
	h.t.Helper()
	select {
	case <-h.ready:
	case err := <-h.done:
		h.done <- err
		h.t.Fatalf("Run returned %v before every child was ready", err)
	case <-time.After(60 * time.Second):
		h.t.Fatalf("children not ready within a minute: %v", h.s.Status())
	}
}

func (h *harness) snapshot() (events, exits []string, started []int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.events), slices.Clone(h.exits), slices.Clone(h.started)
}

func (h *harness) setScenario(f func(role string, n int) string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.scenario = f
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

// all returns a scenario function that always gives sc.
func all(sc string) func(string, int) string {
	return func(string, int) string { return sc }
}
