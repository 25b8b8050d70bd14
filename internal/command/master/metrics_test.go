package master

import (
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/yolkgo/yolk/supervisor"
)

// Only ready children are scraped, one per slot: the newest ready one.
func TestServiceMetricsTargets(t *testing.T) {
	t0 := time.Now()
	live := []processStatus{
		{Role: "agent", ID: "1", PID: 1, State: supervisor.StateReady, Started: t0},
		{Role: "worker", ID: "2", PID: 2, Slot: 0, State: supervisor.StateReady, Started: t0},
		{Role: "worker", ID: "3", PID: 3, Slot: 0, State: supervisor.StateReady, Started: t0.Add(time.Second)}, // its replacement in a reload
		{Role: "worker", ID: "4", PID: 4, Slot: 1, State: supervisor.StateStarting, Started: t0},               // no metrics handler yet
		{Role: "worker", Slot: 2, State: supervisor.StateBackoff},
	}
	s := newServiceMetrics(nil, func() []processStatus { return live }, true, slog.New(slog.DiscardHandler))
	got := make(map[target]string)
	for t, p := range s.targets(live) {
		got[t] = p.ID
	}
	want := map[target]string{{role: "agent"}: "1", {role: "worker", slot: "0"}: "3"}
	if len(got) != len(want) || got[target{role: "agent"}] != "1" || got[target{role: "worker", slot: "0"}] != "3" {
		t.Errorf("targets = %v, want %v", got, want)
	}
}

// A change that every worker got only through a newer one (all its
// arrivals stale) is counted, but not observed as a convergence time of 0.
func TestServiceMetricsConvergence(t *testing.T) {
	s := newServiceMetrics(nil, func() []processStatus { return nil }, true, slog.New(slog.DiscardHandler))
	s.changeComplete(change{Version: "1", Complete: true, TookMs: 0, Arrivals: []arrival{{ID: "w0", Stale: true}}})
	s.changeComplete(change{Version: "2", Complete: true, TookMs: 0})
	s.changeComplete(change{Version: "3", Complete: true, TookMs: 12, Arrivals: []arrival{{ID: "w0", Ms: 12}, {ID: "w1", Stale: true}}})
	if got := histogramCount(t, s); got != 1 {
		t.Errorf("yolk_change_convergence_seconds_count = %d, want 1: only version 3 had a worker that got it in turn", got)
	}
}

func histogramCount(t *testing.T, s *serviceMetrics) uint64 {
	t.Helper()
	var text strings.Builder
	s.service.WriteTo(&text)
	for line := range strings.Lines(text.String()) {
		if v, ok := strings.CutPrefix(line, "yolk_change_convergence_seconds_count "); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				t.Fatalf("yolk_change_convergence_seconds_count: %v", err)
			}
			return n
		}
	}
	t.Fatalf("no yolk_change_convergence_seconds_count in\n%s", text.String())
	return 0
}
