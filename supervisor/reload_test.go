package supervisor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func workerPIDs(st []ChildStatus) []int {
	var pids []int
	for _, c := range st {
		if c.Role == "worker" {
			pids = append(pids, c.PID)
		}
	}
	return pids
}

func TestReload(t *testing.T) {
	h := newHarness(t, 3, all("ready"), nil)
	h.run()
	h.waitAllReady()
	before := h.s.Status()
	agent, olds := before[0].PID, workerPIDs(before)
	events, _, _ := h.snapshot()
	mark := len(events)

	if err := h.s.Reload(t.Context()); err != nil {
		t.Fatalf("Reload() = %v", err)
	}

	after := h.s.Status()
	news := workerPIDs(after)
	if len(after) != 4 || after[0].PID != agent || len(news) != 3 {
		t.Fatalf("Status() after Reload = %+v, want the same agent and 3 workers", after)
	}
	for i, c := range after {
		if c.State != StateReady || c.Restarts != 0 {
			t.Errorf("Status() entry %+v after Reload, want ready, no restarts", c)
		}
		if i > 0 && c.Slot != i-1 { // the slots a metric's series keep across reloads
			t.Errorf("worker %d after Reload has slot %d, want %d", c.PID, c.Slot, i-1)
		}
	}
	for _, p := range news {
		if slices.Contains(olds, p) {
			t.Errorf("worker pids %v after Reload, %v before: %d was not replaced", news, olds, p)
		}
	}
	// In order: new worker k ready before old worker k got SIGTERM.
	events, exits, _ := h.snapshot()
	events = events[mark:]
	for k, old := range olds {
		term := slices.Index(events, fmt.Sprintf("line %d term", old))
		if term < 0 {
			t.Fatalf("old worker %d got no SIGTERM: %q", old, events)
		}
		if ready := fmt.Sprintf("line %d ready", news[k]); !slices.Contains(events[:term], ready) {
			t.Errorf("old worker %d got SIGTERM before its replacement %d was ready: %q", old, news[k], events)
		}
		if !slices.Contains(exits, fmt.Sprintf("worker %d", old)) {
			t.Errorf("old worker %d did not exit: %q", old, exits)
		}
	}
	h.mu.Lock()
	starts := h.starts["worker"]
	h.mu.Unlock()
	if starts != 6 {
		t.Errorf("%d worker starts, want 6: an old worker's exit triggered a restart", starts)
	}
	if log := h.log.String(); strings.Contains(log, "restarting") {
		t.Errorf("log reports a restart during Reload:\n%s", log)
	}
}

func TestReloadFailure(t *testing.T) {
	h := newHarness(t, 2, func(role string, n int) string {
		if role == "worker" && n >= 3 {
			return "never-ready"
		}
		return "ready"
	}, func(c *Config) { c.ReadyTimeout = 3 * time.Second })
	h.run()
	h.waitAllReady()
	olds := workerPIDs(h.s.Status())

	done := make(chan error, 1)
	go func() { done <- h.s.Reload(context.Background()) }()
	waitFor(t, 30*time.Second, "the second new worker started", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.starts["worker"] == 4
	})
	waitFor(t, 30*time.Second, "Status() to show the new worker starting", func() bool {
		st := h.s.Status()
		return len(st) == 4 && st[3].State == StateStarting && st[3].PID > 0
	})
	if err := h.s.Reload(t.Context()); !errors.Is(err, ErrReloading) {
		t.Errorf("Reload() during a reload = %v, want ErrReloading", err)
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("Reload did not return")
	}
	for _, want := range []string{"reload worker 2 of 2: pid ", "not ready within 3s", "\twarming up for ever"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Reload() = %v, want it to contain %q", err, want)
		}
	}
	st := h.s.Status()
	pids := workerPIDs(st)
	if len(pids) != 2 || slices.Contains(olds, pids[0]) || pids[1] != olds[1] {
		t.Errorf("workers %v after a failed Reload (before: %v), want the first replaced, the second kept", pids, olds)
	}
	for _, c := range st {
		if c.State != StateReady {
			t.Errorf("Status() entry %+v after a failed Reload, want ready", c)
		}
	}
	if _, exits, started := h.snapshot(); len(exits) != 2 || len(started) != 5 {
		t.Errorf("exits %q of started %v, want the replaced and the failed worker of 5", exits, started)
	}
}
