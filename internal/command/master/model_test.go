package master

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/internal/masterapi"
	"github.com/yolkgo/yolk/supervisor"
)

// fleetOf is a live function: an agent a1 and workers w0..w(n-1), all ready.
func fleetOf(n int) func() []processStatus {
	return func() []processStatus {
		out := []processStatus{{Role: "agent", ID: "a1", State: supervisor.StateReady}}
		for i := range n {
			out = append(out, processStatus{Role: "worker", ID: "w" + string(rune('0'+i)), Slot: i, State: supervisor.StateReady})
		}
		return out
	}
}

func TestModelTimeline(t *testing.T) {
	m := newModel(fleetOf(2))
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	var done []string
	m.onComplete = func(c change) { done = append(done, c.Version) }

	// Version 1: the agent reads it at t0 (one fetch), the workers follow.
	m.report("a1", bus.RoleAgent, masterapi.State{Version: "1", By: "start", UpdatedAt: t0, Fetches: 1}, at(2))
	m.report("w0", bus.RoleWorker, masterapi.State{Version: "1", By: "start", UpdatedAt: at(5)}, at(6))
	if len(done) != 0 {
		t.Fatalf("complete %v after 1 of 2 workers, want none", done)
	}
	m.report("w1", bus.RoleWorker, masterapi.State{Version: "1", By: "start", UpdatedAt: at(8)}, at(9))
	// Version 2 by push, 2 more fetches (a retry); a worker reports before the
	// agent: the change's time still is the agent's read.
	m.report("w1", bus.RoleWorker, masterapi.State{Version: "2", By: "push", UpdatedAt: at(1010)}, at(1011))
	m.report("a1", bus.RoleAgent, masterapi.State{Version: "2", By: "push", UpdatedAt: at(1000), Fetches: 3}, at(1012))
	// Version 3 reaches w0 before it had 2: 2 is stale for w0, complete with 3.
	m.report("a1", bus.RoleAgent, masterapi.State{Version: "3", By: "pull", UpdatedAt: at(2000), Fetches: 4}, at(2001))
	m.report("w0", bus.RoleWorker, masterapi.State{Version: "3", By: "pull", UpdatedAt: at(2004)}, at(2005))
	m.report("w1", bus.RoleWorker, masterapi.State{Version: "3", By: "pull", UpdatedAt: at(2010)}, at(2030))
	// A worker's catch-up after a restart is no arrival of a complete change.
	m.report("w0", bus.RoleWorker, masterapi.State{Version: "3", By: "start", UpdatedAt: at(9000)}, at(9000))

	if got, want := strings.Join(done, ","), "1,2,3"; got != want {
		t.Errorf("changes completed in order %q, want %q", got, want)
	}
	tl := m.view(processStatus{}, statusReply{}).Timeline
	if len(tl) != 3 {
		t.Fatalf("timeline has %d changes, want 3: %+v", len(tl), tl)
	}
	for i, want := range []struct {
		version, by string
		at          time.Time
		arrivals    int
		took        float64
		fetches     uint64
	}{
		{"1", "start", t0, 2, 9, 1},
		{"2", "push", at(1000), 1, 11, 2},
		{"3", "pull", at(2000), 2, 30, 1},
	} {
		c := tl[i]
		if c.Version != want.version || c.By != want.by || !c.At.Equal(want.at) || !c.Complete {
			t.Errorf("timeline[%d] = %s by %s at %v complete %v, want %s by %s at %v, complete", i,
				c.Version, c.By, c.At, c.Complete, want.version, want.by, want.at)
		}
		if len(c.Arrivals) != want.arrivals || c.TookMs != want.took || c.Fetches != want.fetches {
			t.Errorf("timeline[%d] (%s): %d arrivals, took %vms, %d fetches; want %d, %vms, %d", i, c.Version,
				len(c.Arrivals), c.TookMs, c.Fetches, want.arrivals, want.took, want.fetches)
		}
	}
	if a := tl[1].Arrivals[0]; a.ID != "w1" || a.Slot != 1 || a.Ms != 11 {
		t.Errorf("version 2's arrival = %+v, want w1 in slot 1 after 11ms (from the agent's read, not the first report)", a)
	}
}

func TestModelTimelineBounded(t *testing.T) {
	m := newModel(fleetOf(1))
	t0 := time.Now()
	for i := range timelineLen + 5 {
		v := string(rune('A'+i%26)) + string(rune('a'+i/26))
		m.report("w0", bus.RoleWorker, masterapi.State{Version: v, By: "push", UpdatedAt: t0}, t0.Add(time.Duration(i)*time.Millisecond))
	}
	tl := m.view(processStatus{}, statusReply{}).Timeline
	if len(tl) != timelineLen || tl[0].Version != "Fa" {
		t.Errorf("timeline after %d changes: %d, oldest %s; want %d, oldest Fa", timelineLen+5, len(tl), tl[0].Version, timelineLen)
	}
}

func TestModelRates(t *testing.T) {
	m := newModel(fleetOf(1))
	t0 := time.Now()
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	rates := func() map[string]float64 { return m.view(processStatus{}, statusReply{}).Rates }
	m.beat("a1", bus.RoleAgent, masterapi.Heartbeat{Sent: map[string]uint64{"sendToApp": 10}}, t0)
	m.beat("w0", bus.RoleWorker, masterapi.Heartbeat{Sent: map[string]uint64{"sendToMaster": 5}}, t0)
	m.sample(t0)
	if r := rates(); len(r) != 0 {
		t.Errorf("rates after one sample = %v, want none", r)
	}
	m.beat("a1", bus.RoleAgent, masterapi.Heartbeat{Sent: map[string]uint64{"sendToApp": 30, "broadcast": 4}}, at(2))
	m.beat("w0", bus.RoleWorker, masterapi.Heartbeat{Sent: map[string]uint64{"sendToMaster": 7}}, at(2))
	m.sample(at(2))
	want := map[string]float64{"sendToApp": 10, "sendToMaster": 1, "broadcast": 2}
	for verb, n := range want {
		if r := rates(); r[verb] != n {
			t.Errorf("rate of %s = %v, want %v (all: %v)", verb, r[verb], n, r)
		}
	}
	// The agent restarts (its counts start from 0 again: 2 calls since), and
	// the worker leaves: what they sent before stays in the window.
	m.beat("a1", bus.RoleAgent, masterapi.Heartbeat{Sent: map[string]uint64{"sendToApp": 2}}, at(4))
	m.forget(fleetOf(0)())
	m.sample(at(4))
	want = map[string]float64{"sendToApp": 22.0 / 4, "sendToMaster": 2.0 / 4, "broadcast": 4.0 / 4}
	for verb, n := range want {
		if r := rates(); r[verb] != n {
			t.Errorf("after a restart and a leave, rate of %s = %v, want %v (all: %v)", verb, r[verb], n, r)
		}
	}
	// The window slides: samples older than rateWindow go, and their calls.
	for i := range 20 {
		m.sample(at(5 + i))
	}
	if n := len(m.sent); n > int(rateWindow/time.Second)+2 {
		t.Errorf("%d samples held, want at most %d", n, int(rateWindow/time.Second)+2)
	}
	if r := rates(); len(r) != 0 {
		t.Errorf("rates after %v without a call = %v, want none", rateWindow, r)
	}
}

// CPU time that falls (a container restarted with the same YOLK_ID) starts
// the child's usage over, rather than showing a negative percentage.
func TestModelCPUFalls(t *testing.T) {
	m := newModel(fleetOf(1))
	t0 := time.Now()
	cpu := func() float64 {
		for _, p := range m.view(processStatus{}, statusReply{}).Children {
			if p.ID == "w0" {
				return p.CPUPercent
			}
		}
		return -1
	}
	m.beat("w0", bus.RoleWorker, masterapi.Heartbeat{CPU: 10}, t0)
	m.beat("w0", bus.RoleWorker, masterapi.Heartbeat{CPU: 10.5}, t0.Add(time.Second))
	if got := cpu(); got != 50 {
		t.Errorf("CPU %% after 0.5s in 1s = %v, want 50", got)
	}
	m.beat("w0", bus.RoleWorker, masterapi.Heartbeat{CPU: 0.1}, t0.Add(2*time.Second))
	if got := cpu(); got != 0 {
		t.Errorf("CPU %% after the CPU time fell = %v, want 0", got)
	}
	m.beat("w0", bus.RoleWorker, masterapi.Heartbeat{CPU: 0.3}, t0.Add(3*time.Second))
	if got := cpu(); got < 19.99 || got > 20.01 {
		t.Errorf("CPU %% a second later = %v, want 20", got)
	}
}

func TestModelSchedules(t *testing.T) {
	m := newModel(fleetOf(2))
	now := time.Now()
	m.beat("a1", bus.RoleAgent, masterapi.Heartbeat{Schedules: []masterapi.Planned{
		{Name: "pull_refresh", Type: "worker", Every: "10s", Seq: 3, Last: now.Add(-time.Second), Next: now.Add(9 * time.Second)},
		{Name: "force_refresh", Type: "all", Every: "10m0s", Next: now.Add(10 * time.Minute)},
	}}, now)
	m.beat("w0", bus.RoleWorker, masterapi.Heartbeat{Runs: []masterapi.RunResult{{Name: "pull_refresh", Seq: 2, Started: now.Add(-11 * time.Second), TookMs: 4, Outcome: "ok"}}}, now)
	m.beat("w1", bus.RoleWorker, masterapi.Heartbeat{Runs: []masterapi.RunResult{{Name: "pull_refresh", Seq: 3, Started: now.Add(-time.Second), TookMs: 7, Outcome: "error", Err: "remote: 500"}}}, now)
	// an older report of w0 does not hide w1's newer run
	m.beat("w0", bus.RoleWorker, masterapi.Heartbeat{Runs: []masterapi.RunResult{{Name: "pull_refresh", Seq: 2, Started: now.Add(-11 * time.Second), TookMs: 4, Outcome: "ok"}}}, now.Add(time.Second))

	// A worker sets no schedule, the agent no run.
	m.beat("w1", bus.RoleWorker, masterapi.Heartbeat{Schedules: []masterapi.Planned{{Name: "fake", Type: "all"}}}, now)
	m.beat("a1", bus.RoleAgent, masterapi.Heartbeat{
		Schedules: []masterapi.Planned{
			{Name: "pull_refresh", Type: "worker", Every: "10s", Seq: 3, Last: now.Add(-time.Second), Next: now.Add(9 * time.Second)},
			{Name: "force_refresh", Type: "all", Every: "10m0s", Next: now.Add(10 * time.Minute)},
		},
		Runs: []masterapi.RunResult{{Name: "pull_refresh", Seq: 9, Started: now, Outcome: "ok"}},
	}, now)
	// A heartbeat that fails its Check is refused, and changes nothing.
	bad := masterapi.Heartbeat{RSS: 1, Runs: []masterapi.RunResult{{Name: "pull_refresh", Seq: 4, Started: now, Outcome: "<img>"}}}
	if err := m.beat("w1", bus.RoleWorker, bad, now.Add(time.Second)); err == nil {
		t.Errorf("beat(w1, outcome <img>) = nil, want it refused")
	}
	if hb, _, _ := m.heartbeat("w1"); hb.RSS != 0 {
		t.Errorf("w1's heartbeat after a refused one has RSS %d, want the last good one's 0", hb.RSS)
	}

	got := m.view(processStatus{}, statusReply{}).Schedules
	if len(got) != 2 {
		t.Fatalf("schedules = %+v, want 2", got)
	}
	if s := got[0]; s.Name != "pull_refresh" || s.Outcome != "error" || s.Err != "remote: 500" || s.DurationMs != 7 || s.Worker != "w1" || s.RunSeq != 3 {
		t.Errorf("pull_refresh = %+v, want w1's run 3, error after 7ms", s)
	}
	if s := got[1]; s.Name != "force_refresh" || s.Outcome != "" || !s.Next.Equal(now.Add(10*time.Minute)) {
		t.Errorf("force_refresh = %+v, want no run yet, next in 10m", s)
	}
}

func TestHealth(t *testing.T) {
	ready := func(role, id string) processStatus {
		return processStatus{Role: role, ID: id, State: supervisor.StateReady}
	}
	for _, tt := range []struct {
		name     string
		children []processStatus
		want     string
	}{
		{"all ready", []processStatus{ready("agent", "a"), ready("worker", "w")}, "ok"},
		{"agent missing", withMissing([]processStatus{ready("worker", "w")}), "degraded: the agent is missing"},
		{"agent in backoff", []processStatus{{Role: "agent", State: supervisor.StateBackoff}, ready("worker", "w")}, "degraded: the agent is not ready"},
		{"a worker restarting", []processStatus{ready("agent", "a"), ready("worker", "w"), {Role: "worker", State: supervisor.StateStarting}}, "degraded: a worker is starting"},
		{"no worker", []processStatus{ready("agent", "a")}, "degraded: no worker is ready"},
	} {
		if got := health(tt.children); got != tt.want {
			t.Errorf("%s: health(%+v) = %q, want %q", tt.name, tt.children, got, tt.want)
		}
	}
	if got := withMissing([]processStatus{ready("agent", "a")}); len(got) != 1 {
		t.Errorf("withMissing with an agent = %+v, want it alone", got)
	}
}

// A child that starts and reports while a round of heartbeats waits for a
// slow child keeps its report at the end of the round.
func TestModelHeartbeatsKeepNewChild(t *testing.T) {
	var mu sync.Mutex
	children := fleetOf(0)()
	live := func() []processStatus {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(children)
	}
	m := newModel(live)
	pinged, release := make(chan struct{}), make(chan struct{})
	ping := func(ctx context.Context, id string) (masterapi.Heartbeat, error) {
		close(pinged) // only a1 is live in the first round
		<-release
		return masterapi.Heartbeat{}, nil
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { m.heartbeats(ctx, ping, time.Hour, slog.New(slog.DiscardHandler)) })
	defer wg.Wait()
	defer cancel()

	<-pinged
	mu.Lock()
	children = append(children, processStatus{Role: "worker", ID: "w0", PID: 2, State: supervisor.StateReady})
	mu.Unlock()
	m.report("w0", bus.RoleWorker, masterapi.State{Version: "1", By: "start"}, time.Now())
	changes, done := m.subscribe()
	defer done()
	close(release)
	select {
	case <-changes: // the end of the round
	case <-time.After(5 * time.Second):
		t.Fatal("the round of heartbeats did not end within 5s")
	}
	for _, p := range m.view(processStatus{}, statusReply{}).Children {
		if p.ID == "w0" && p.Cache == nil {
			t.Errorf("w0's report, made during the round, was forgotten at its end")
		}
	}
}

// A view is read without the model's lock (the status request's encoding,
// the page's feed) while reports keep coming, some of which move a change's
// time and with it its arrivals': the view must hold copies. Under -race,
// sharing the arrivals was a data race (seen in TestChaosKill).
func TestModelViewWhileReports(t *testing.T) {
	m := newModel(fleetOf(2))
	t0 := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 {
			if _, err := json.Marshal(m.view(processStatus{Role: "master"}, statusReply{})); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := range 200 {
		// each round, a worker's report, then a report of the same change
		// from earlier: the arrivals' times move
		v := strconv.Itoa(i / 4)
		m.report("w0", bus.RoleWorker, masterapi.State{Version: v, By: "push", UpdatedAt: t0.Add(time.Duration(i) * time.Millisecond)}, t0.Add(time.Duration(i+1)*time.Millisecond))
		m.report("a1", bus.RoleAgent, masterapi.State{Version: v, By: "push", UpdatedAt: t0.Add(time.Duration(i-2) * time.Millisecond)}, t0.Add(time.Duration(i+2)*time.Millisecond))
	}
	<-done
}
