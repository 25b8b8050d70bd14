package supervisor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStartStop(t *testing.T) {
	name := filepath.Join(t.TempDir(), "fd4")
	if err := os.WriteFile(name, []byte("hello-fd4"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := newHarness(t, 2, all("ready"), func(c *Config) {
		c.Worker.ExtraFiles = []*os.File{f}
		c.Worker.Env = append(c.Worker.Env, "YOLK_TEST_FD4=1")
	})
	h.run()
	h.waitAllReady()

	st := h.s.Status()
	if len(st) != 3 || st[0].Role != "agent" || st[1].Role != "worker" || st[2].Role != "worker" {
		t.Fatalf("Status() = %+v, want agent, worker, worker", st)
	}
	for _, c := range st {
		if c.State != StateReady || c.PID <= 0 || c.Restarts != 0 || c.Started.IsZero() {
			t.Errorf("Status() entry %+v, want ready with a pid and no restarts", c)
		}
	}
	events, _, _ := h.snapshot()
	for _, want := range []string{
		"line " + strconv.Itoa(st[0].PID) + " role=agent lifeline=3 fd4=none",
		"line " + strconv.Itoa(st[1].PID) + " role=worker lifeline=3 fd4=hello-fd4",
		"line " + strconv.Itoa(st[2].PID) + " role=worker lifeline=3 fd4=hello-fd4",
	} {
		if !slices.Contains(events, want) {
			t.Errorf("no output line %q in %q", want, events)
		}
	}

	h.cancel()
	if err := h.wait(60 * time.Second); err != nil {
		t.Fatalf("Run() after cancel = %v, want nil", err)
	}
	_, exits, started := h.snapshot()
	if len(exits) != 3 || len(started) != 3 {
		t.Fatalf("exits %q of started %v, want 3 of 3", exits, started)
	}
	if exits[2] != "agent "+strconv.Itoa(st[0].PID) {
		t.Errorf("exit order %q, want the workers first, then the agent", exits)
	}
	for _, pid := range started {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("kill(%d, 0) after Run = %v, want ESRCH (reaped)", pid, err)
		}
	}
	log := h.log.String()
	if i, j := strings.Index(log, "stopping workers"), strings.Index(log, "stopping agent"); i < 0 || j < i {
		t.Errorf("log does not say stopping workers, then the agent:\n%s", log)
	}
	if got := h.s.Status(); len(got) != 0 {
		t.Errorf("Status() after Run = %+v, want none", got)
	}
	if err := h.s.Reload(context.Background()); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Reload() after Run = %v, want ErrNotRunning", err)
	}
	if err := h.s.Run(context.Background()); err == nil {
		t.Errorf("second Run() = nil, want an error")
	}
}

func TestRestartAndCrashLoop(t *testing.T) {
	h := newHarness(t, 2, all("ready"), nil)
	h.run()
	h.waitAllReady()
	first := h.s.Status()[1]

	// A worker that exits is restarted and its restart count rises.
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var second ChildStatus
	waitFor(t, 30*time.Second, "the worker restarted and ready", func() bool {
		st := h.s.Status()
		second = st[1]
		return len(st) == 3 && second.PID != first.PID && second.PID != 0 &&
			second.State == StateReady && second.Restarts == 1
	})
	if log := h.log.String(); !strings.Contains(log, "child exited; restarting it after backoff") {
		t.Errorf("log does not report the exit:\n%s", log)
	}

	// Restarts that crash at once: a crash loop, logged with the stderr tail,
	// and the slot is kept, in backoff.
	h.setScenario(func(role string, _ int) string {
		if role == "worker" {
			return "crashloop"
		}
		return "ready"
	})
	if err := syscall.Kill(second.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "a crash loop in the log", func() bool {
		return strings.Contains(h.log.String(), "crash looping")
	})
	waitFor(t, 30*time.Second, "the worker in backoff", func() bool {
		st := h.s.Status()
		return len(st) == 3 && st[1].State == StateBackoff && st[1].PID == 0
	})
	var loop string
	for line := range strings.Lines(h.log.String()) {
		if strings.Contains(line, "crash looping") {
			loop = line
			break
		}
	}
	for _, want := range []string{
		"level=ERROR", "role=worker", "restarts=", "exits=3", "exit status 2",
		`stderr="crash detail 6\ncrash detail 7\n`, `crash detail 25"`,
	} {
		if !strings.Contains(loop, want) {
			t.Errorf("crash loop record lacks %q: %s", want, loop)
		}
	}
	if strings.Contains(loop, "crash detail 5\\n") {
		t.Errorf("crash loop record has more than %d stderr lines: %s", tailLines, loop)
	}

	// It keeps being restarted: once the cause is gone, it is ready again.
	h.setScenario(all("ready"))
	waitFor(t, 30*time.Second, "the worker ready again", func() bool {
		st := h.s.Status()
		return len(st) == 3 && st[1].State == StateReady && st[1].Restarts >= 3
	})
	if got := h.s.Status()[2]; got.Restarts != 0 || got.State != StateReady {
		t.Errorf("the other worker %+v, want ready, never restarted", got)
	}
}

func TestRestartNotReady(t *testing.T) {
	h := newHarness(t, 1, func(role string, n int) string {
		if role == "worker" && n > 0 {
			return "never-ready"
		}
		return "ready"
	}, func(c *Config) { c.ReadyTimeout = 3 * time.Second })
	h.run()
	h.waitAllReady()
	if err := syscall.Kill(h.s.Status()[1].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "a restarted worker killed for not being ready", func() bool {
		return strings.Contains(h.log.String(), "not ready within 3s") && h.s.Status()[1].Restarts >= 2
	})
	h.cancel()
	if err := h.wait(60 * time.Second); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	if _, exits, started := h.snapshot(); len(exits) != len(started) {
		t.Errorf("%d children exited of %d started", len(exits), len(started))
	}
}

func TestStartFailure(t *testing.T) {
	tests := []struct {
		name     string
		scenario func(role string, n int) string
		edit     func(*Config)
		want     []string
	}{
		{
			name:     "agent never ready",
			scenario: all("never-ready"),
			edit:     func(c *Config) { c.ReadyTimeout = 3 * time.Second },
			want:     []string{"start agent: pid ", "not ready within 3s", "last stderr lines:\n\twarming up for ever"},
		},
		{
			name:     "agent exits",
			scenario: all("exit3"),
			want:     []string{"start agent: pid ", "exited before ready: exit status 3", "\texit3: about to fail"},
		},
		{
			name: "worker exits",
			scenario: func(role string, _ int) string {
				if role == "worker" {
					return "exit3"
				}
				return "ready"
			},
			want: []string{"start worker: pid ", "exited before ready: exit status 3", "\texit3: about to fail"},
		},
		{
			name:     "no agent binary",
			scenario: all("ready"),
			edit:     func(c *Config) { c.Agent.Path = "/nonexistent/agent" },
			want:     []string{"start agent: exec /nonexistent/agent"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, 2, tt.scenario, tt.edit)
			h.run()
			err := h.wait(60 * time.Second)
			if err == nil {
				t.Fatalf("Run() = nil, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Run() = %q, want it to contain %q", err, w)
				}
			}
			_, exits, started := h.snapshot()
			for _, pid := range started {
				if !slices.ContainsFunc(exits, func(e string) bool { return strings.HasSuffix(e, " "+strconv.Itoa(pid)) }) {
					t.Errorf("exited was not called for pid %d: %q", pid, exits)
				}
				if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
					t.Errorf("kill(%d, 0) after Run = %v, want ESRCH", pid, err)
				}
			}
		})
	}
}

func TestIgnoreTerm(t *testing.T) {
	const timeout = time.Second
	h := newHarness(t, 2, func(role string, _ int) string {
		if role == "worker" {
			return "ignore-term"
		}
		return "ready"
	}, func(c *Config) { c.ShutdownTimeout = timeout })
	h.run()
	h.waitAllReady()
	start := time.Now()
	h.cancel()
	waitFor(t, 30*time.Second, "a worker stopping", func() bool {
		return slices.ContainsFunc(h.s.Status(), func(c ChildStatus) bool {
			return c.Role == "worker" && c.State == StateStopping
		})
	})
	if err := h.wait(60 * time.Second); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	if got := time.Since(start); got < timeout {
		t.Errorf("Run returned %v after cancel, want at least ShutdownTimeout %v", got, timeout)
	}
	if got := strings.Count(h.log.String(), "did not stop in time"); got != 2 {
		t.Errorf("log reports %d children killed after the timeout, want 2", got)
	}
	_, exits, _ := h.snapshot()
	if len(exits) != 3 || !strings.HasPrefix(exits[2], "agent ") {
		t.Errorf("exits %q, want both workers, then the agent", exits)
	}
}

func TestKill(t *testing.T) {
	for _, graceful := range []bool{false, true} {
		name := map[bool]string{false: "while running", true: "while stopping"}[graceful]
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, 2, func(role string, _ int) string {
				if role == "worker" {
					return "ignore-term"
				}
				return "ready"
			}, func(c *Config) { c.ShutdownTimeout = 10 * time.Minute })
			h.run()
			h.waitAllReady()
			if graceful {
				h.cancel()
				waitFor(t, 30*time.Second, "a worker stopping", func() bool {
					return slices.ContainsFunc(h.s.Status(), func(c ChildStatus) bool { return c.State == StateStopping })
				})
			}
			h.s.Kill()
			if err := h.wait(30 * time.Second); !errors.Is(err, ErrKilled) {
				t.Fatalf("Run() after Kill = %v, want ErrKilled", err)
			}
			_, exits, started := h.snapshot()
			if len(exits) != 3 || len(started) != 3 {
				t.Errorf("exits %q of started %v, want 3 of 3", exits, started)
			}
		})
	}
}
