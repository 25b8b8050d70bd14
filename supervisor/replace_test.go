package supervisor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// checkReplaced checks that worker old was replaced by one new worker in its
// slot, ready before old got its first signal (the line sig, as the child
// said it), and that old exited.
func checkReplaced(t *testing.T, h *harness, before []ChildStatus, old int, sig string, wantRestarts int) ChildStatus {
	t.Helper()
	after := h.s.Status()
	if len(after) != len(before) {
		t.Fatalf("Status() after Replace = %+v, want %d children", after, len(before))
	}
	var nw ChildStatus
	for i, c := range after {
		if c.State != StateReady {
			t.Errorf("Status() entry %+v after Replace, want ready", c)
		}
		if c.PID == old {
			t.Errorf("worker %d still in Status() after Replace: %+v", old, after)
		}
		if b := before[i]; b.PID == old {
			nw = c
			if c.Slot != b.Slot || c.Role != b.Role || c.Restarts != wantRestarts {
				t.Errorf("replacement %+v of %+v: want the same slot and role, %d restarts", c, b, wantRestarts)
			}
		} else if c.PID != b.PID {
			t.Errorf("Status() entry %d changed from %+v to %+v; only %d was to be replaced", i, b, c, old)
		}
	}
	events, exits, _ := h.snapshot()
	first := slices.Index(events, fmt.Sprintf("line %d %s", old, sig))
	if first < 0 {
		t.Fatalf("worker %d never said %q: %q", old, sig, events)
	}
	if !slices.Contains(events[:first], fmt.Sprintf("line %d ready", nw.PID)) {
		t.Errorf("worker %d got its signal before its replacement %d was ready: %q", old, nw.PID, events)
	}
	if !slices.Contains(exits, fmt.Sprintf("worker %d", old)) {
		t.Errorf("worker %d did not exit: %q", old, exits)
	}
	return nw
}

func TestReplaceWorkerGracefully(t *testing.T) {
	h := newHarness(t, 3, all("ready"), nil)
	h.run()
	h.waitAllReady()
	before := h.s.Status()
	old := before[2].PID // the second worker, slot 1

	claimed := 0
	if err := h.s.Replace(t.Context(), old, StopGraceful, func() { claimed++ }); err != nil {
		t.Fatalf("Replace(%d, StopGraceful) = %v", old, err)
	}
	if claimed != 1 {
		t.Errorf("Replace(%d, StopGraceful) called claimed %d times, want 1", old, claimed)
	}
	checkReplaced(t, h, before, old, "term", 1)
	if log := h.log.String(); strings.Contains(log, "restarting") || strings.Contains(log, "SIGQUIT") {
		t.Errorf("log of a graceful Replace reports a restart or a SIGQUIT:\n%s", log)
	}
}

// A worker that ignores SIGQUIT: the replacement is ready before the old one
// gets SIGQUIT, and the old one gets SIGKILL after QuitTimeout.
func TestReplaceWorkerQuitThenKill(t *testing.T) {
	h := newHarness(t, 2, func(role string, n int) string {
		if role == "worker" && n == 1 {
			return "ignore-quit"
		}
		return "ready"
	}, func(c *Config) { c.QuitTimeout = 500 * time.Millisecond })
	h.run()
	h.waitAllReady()
	before := h.s.Status()
	old := h.playing("ignore-quit")

	start := time.Now()
	if err := h.s.Replace(t.Context(), old, StopQuit, nil); err != nil {
		t.Fatalf("Replace(%d, StopQuit) = %v", old, err)
	}
	took := time.Since(start)
	checkReplaced(t, h, before, old, "quit", 1)
	if want := fmt.Sprintf(`msg="child did not exit after SIGQUIT; killing it" role=worker pid=%d`, old); !strings.Contains(h.log.String(), want) {
		t.Errorf("log has no %q:\n%s", want, h.log.String())
	}
	if took < 500*time.Millisecond {
		t.Errorf("Replace returned after %v, before QuitTimeout (500ms) had passed", took)
	}
	events, _, _ := h.snapshot()
	if slices.Contains(events, fmt.Sprintf("line %d term", old)) {
		t.Errorf("worker %d got SIGTERM; want SIGQUIT then SIGKILL: %q", old, events)
	}
}

// A SIGSTOPped worker still dumps its goroutines: it gets SIGCONT after SIGQUIT.
func TestReplaceStoppedWorkerDumps(t *testing.T) {
	h := newHarness(t, 2, all("ready"), func(c *Config) { c.QuitTimeout = 20 * time.Second })
	h.run()
	h.waitAllReady()
	before := h.s.Status()
	old := before[1].PID
	if err := syscall.Kill(old, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(old, syscall.SIGCONT) })

	if err := h.s.Replace(t.Context(), old, StopQuit, nil); err != nil {
		t.Fatalf("Replace(%d, StopQuit) = %v", old, err)
	}
	checkReplaced(t, h, before, old, "SIGQUIT: quit", 1)
	events, _, _ := h.snapshot()
	if !slices.ContainsFunc(events, func(e string) bool { return strings.HasPrefix(e, fmt.Sprintf("line %d goroutine ", old)) }) {
		t.Errorf("no goroutine dump from worker %d: %q", old, events)
	}
	if strings.Contains(h.log.String(), "killing it") {
		t.Errorf("worker %d needed SIGKILL; want it to exit by its SIGQUIT:\n%s", old, h.log.String())
	}
}

// The agent is stopped and restarted at once in its slot; the workers stay.
func TestReplaceAgent(t *testing.T) {
	h := newHarness(t, 2, all("ready"), func(c *Config) { c.StableAfter = 10 * time.Millisecond })
	h.run()
	h.waitAllReady()
	before := h.s.Status()
	agent := before[0].PID
	waitFor(t, 10*time.Second, "the agent stable", func() bool { return time.Since(before[0].Started) > 100*time.Millisecond })
	if err := syscall.Kill(agent, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(agent, syscall.SIGCONT) })

	if err := h.s.Replace(t.Context(), agent, StopQuit, nil); err != nil {
		t.Fatalf("Replace(agent %d, StopQuit) = %v", agent, err)
	}
	waitFor(t, 20*time.Second, "a new agent ready", func() bool {
		st := h.s.Status()
		return st[0].PID != agent && st[0].PID != 0 && st[0].State == StateReady
	})
	after := h.s.Status()
	if after[0].Restarts != 1 {
		t.Errorf("agent after Replace: %+v, want 1 restart", after[0])
	}
	if !slices.Equal(workerPIDs(after), workerPIDs(before)) {
		t.Errorf("workers %v after the agent's Replace, want %v unchanged", workerPIDs(after), workerPIDs(before))
	}
	events, _, _ := h.snapshot()
	if !slices.ContainsFunc(events, func(e string) bool { return strings.HasPrefix(e, fmt.Sprintf("line %d goroutine ", agent)) }) {
		t.Errorf("no goroutine dump from the agent %d: %q", agent, events)
	}
}

func TestReplaceRefused(t *testing.T) {
	h := newHarness(t, 1, func(role string, n int) string {
		if role == "worker" && n >= 1 {
			return "never-ready"
		}
		return "ready"
	}, func(c *Config) { c.ReadyTimeout = 2 * time.Second })
	if err := h.s.Replace(t.Context(), 1, StopQuit, nil); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Replace before Run = %v, want ErrNotRunning", err)
	}
	h.run()
	h.waitAllReady()
	if err := h.s.Replace(t.Context(), 1, StopQuit, nil); !errors.Is(err, ErrNoChild) {
		t.Errorf("Replace(1) = %v, want ErrNoChild", err)
	}
	old := workerPIDs(h.s.Status())[0]
	done := make(chan error, 1)
	go func() { done <- h.s.Replace(context.Background(), old, StopQuit, nil) }()
	waitFor(t, 20*time.Second, "the replacement starting", func() bool { return len(h.s.Status()) == 3 })
	claimed := false
	if err := h.s.Replace(t.Context(), old, StopQuit, func() { claimed = true }); !errors.Is(err, ErrReplacing) || claimed {
		t.Errorf("Replace during Replace = %v, claimed called %v; want ErrReplacing, not claimed", err, claimed)
	}
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "not ready within 2s") {
		t.Errorf("Replace with a replacement never ready = %v, want its error", err)
	}
	if pids := workerPIDs(h.s.Status()); !slices.Equal(pids, []int{old}) {
		t.Errorf("workers %v after a failed Replace, want the old one %d kept", pids, old)
	}
}

// A Reload asked for while a Replace runs waits for it, then runs: a SIGHUP
// or a master reload is not lost to the watchdog.
func TestReloadWaitsForReplace(t *testing.T) {
	h := newHarness(t, 1, func(role string, n int) string {
		if role == "worker" && n == 1 {
			return "never-ready" // the Replace's worker: it fails after ReadyTimeout
		}
		return "ready"
	}, func(c *Config) { c.ReadyTimeout = 2 * time.Second })
	h.run()
	h.waitAllReady()
	old := workerPIDs(h.s.Status())[0]
	replaced := make(chan error, 1)
	go func() { replaced <- h.s.Replace(context.Background(), old, StopQuit, nil) }()
	waitFor(t, 20*time.Second, "the replacement starting", func() bool { return len(h.s.Status()) == 3 })

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := h.s.Reload(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Reload during Replace, its context done first = %v, want context.DeadlineExceeded", err)
	}
	reloaded := make(chan error, 1)
	go func() { reloaded <- h.s.Reload(context.Background()) }()
	select {
	case err := <-reloaded:
		t.Fatalf("Reload during Replace = %v before the Replace ended, want it to wait", err)
	case err := <-replaced:
		if err == nil || !strings.Contains(err.Error(), "not ready within 2s") {
			t.Errorf("Replace with a replacement never ready = %v, want its error", err)
		}
	}
	if err := <-reloaded; err != nil {
		t.Fatalf("Reload after the Replace ended = %v, want nil", err)
	}
	if pids := workerPIDs(h.s.Status()); len(pids) != 1 || pids[0] == old {
		t.Errorf("workers %v after the Reload, want one new worker in place of %d", pids, old)
	}
}

// An agent that exited and was restarted since Replace found it is not the
// one asked for: it is left alone.
func TestRestartNowOtherPID(t *testing.T) {
	h := newHarness(t, 1, all("ready"), nil)
	h.run()
	h.waitAllReady()
	agent := h.s.Status()[0].PID
	h.s.mu.Lock()
	sl := h.s.agent
	h.s.mu.Unlock()
	if err := h.s.restartNow(t.Context(), sl, agent+1, StopQuit); !errors.Is(err, ErrNoChild) {
		t.Errorf("restartNow(agent slot, pid %d) with agent %d = %v, want ErrNoChild", agent+1, agent, err)
	}
	if events, _, _ := h.snapshot(); slices.Contains(events, fmt.Sprintf("line %d SIGQUIT: quit", agent)) {
		t.Errorf("agent %d got SIGQUIT, asked for pid %d: %q", agent, agent+1, events)
	}
	if st := h.s.Status()[0]; st.PID != agent || st.State != StateReady {
		t.Errorf("agent after restartNow of another pid: %+v, want %d ready", st, agent)
	}
}
