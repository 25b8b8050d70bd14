package master

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/yolkgo/yolk/internal/masterapi"
	"github.com/yolkgo/yolk/supervisor"
)

// fakeSup is the supervisor as the watchdog sees it. A Replace calls
// refuse, if set, and fails with its error; else it calls claimed and puts a
// new child, started at now, in the old one's place.
type fakeSup struct {
	now      time.Time
	children []supervisor.ChildStatus
	refuse   func(pid int) error
	calls    []int // the pids Replace was asked for
}

func (f *fakeSup) Status() []supervisor.ChildStatus { return slices.Clone(f.children) }

func (f *fakeSup) Replace(_ context.Context, pid int, _ supervisor.Stop, claimed func()) error {
	f.calls = append(f.calls, pid)
	if f.refuse != nil {
		if err := f.refuse(pid); err != nil {
			return err
		}
	}
	claimed()
	for i, c := range f.children {
		if c.PID == pid {
			f.children[i].PID, f.children[i].Started, f.children[i].Restarts = pid+100, f.now, c.Restarts+1
		}
	}
	return nil
}

// wdHarness is a watchdog on a fakeSup, with heartbeats and resident sizes
// the test sets, and its log in a buffer.
type wdHarness struct {
	w     *watchdog
	sup   *fakeSup
	beats map[int]time.Time
	rss   map[int]uint64
	log   bytes.Buffer
}

func newWDHarness(hang time.Duration, maxRSS uint64, maxRSSFor time.Duration, t0 time.Time, children ...supervisor.ChildStatus) *wdHarness {
	h := &wdHarness{sup: &fakeSup{now: t0, children: children}, beats: map[int]time.Time{}, rss: map[int]uint64{}}
	h.w = &watchdog{
		hang: hang, maxRSS: maxRSS, maxRSSFor: maxRSSFor, sup: h.sup,
		beat: func(id string) (masterapi.Heartbeat, time.Time, bool) {
			pid, _ := strconv.Atoi(id)
			at, ok := h.beats[pid]
			return masterapi.Heartbeat{}, at, ok
		},
		sockets: &healthSockets{byPID: map[int]string{}}, // no sockets: heartbeats alone
		rss:     func(pid int) (uint64, error) { return h.rss[pid], nil },
		log:     slog.New(slog.NewTextHandler(&h.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ready:   map[int]time.Time{}, over: map[int]time.Time{}, tried: map[int]attempt{}, putOff: map[int]attempt{},
		memReplaced: map[int]bool{}, memOff: map[int]bool{},
	}
	return h
}

// at runs one check at now.
func (h *wdHarness) at(now time.Time) {
	h.sup.now = now
	h.w.check(context.Background(), now)
}

// ticks runs a check every w.every() from from to to, each after calling
// before(now) if it is not nil.
func (h *wdHarness) ticks(from, to time.Time, before func(now time.Time)) {
	for now := from; !now.After(to); now = now.Add(h.w.every()) {
		if before != nil {
			before(now)
		}
		h.at(now)
	}
}

func (h *wdHarness) count(msg string) int { return strings.Count(h.log.String(), `msg="`+msg) }

func worker(pid, slot int, started time.Time) supervisor.ChildStatus {
	return supervisor.ChildStatus{Role: "worker", Slot: slot, PID: pid, State: supervisor.StateReady, Started: started}
}

var wdT0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

func sec(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// A child that took long to start and has not answered a ping yet is not
// hung: its silence counts from when it was first seen ready.
func TestWatchdogFirstBeatAfterStart(t *testing.T) {
	h := newWDHarness(2*time.Second, 0, time.Second, wdT0, worker(10, 0, wdT0.Add(-30*time.Second)))
	h.ticks(wdT0, wdT0.Add(sec(1.9)), nil)
	if len(h.sup.calls) != 0 {
		t.Fatalf("Replace(%v) within 1.9s of a worker's ready, before its first heartbeat, want none (hang 2s)\n%s", h.sup.calls, h.log.String())
	}
	h.at(wdT0.Add(2 * time.Second))
	if !slices.Equal(h.sup.calls, []int{10}) || h.count("worker hung; replacing it") != 1 {
		t.Errorf("Replace(%v) 2s after the ready with no heartbeat, want [10] and one warning\n%s", h.sup.calls, h.log.String())
	}
}

// YOLK_HANG_TIMEOUT=1s, the least: the master pings every 250ms, and a child
// that answers, however late within that, is never hung.
func TestWatchdogSmallHang(t *testing.T) {
	for hang, want := range map[time.Duration]time.Duration{
		0: time.Second, time.Second: 250 * time.Millisecond, 2 * time.Second: 500 * time.Millisecond,
		10 * time.Second: time.Second, time.Minute: time.Second,
	} {
		if got := heartbeatInterval(hang); got != want {
			t.Errorf("heartbeatInterval(%v) = %v, want %v", hang, got, want)
		}
	}
	for _, v := range []struct {
		value string
		ok    bool
	}{{"0", true}, {"1s", true}, {"10s", true}, {"999ms", false}, {"250ms", false}, {"-1s", false}} {
		err := checkConfig([]string{"YOLK_RUN_DIR=run", "YOLK_AGENT_BIN=/bin/sh", "YOLK_WORKER_BIN=/bin/sh", "YOLK_HANG_TIMEOUT=" + v.value})
		if (err == nil) != v.ok || err != nil && !strings.Contains(err.Error(), "YOLK_HANG_TIMEOUT") {
			t.Errorf("config with YOLK_HANG_TIMEOUT=%s: %v, want ok %v", v.value, err, v.ok)
		}
	}

	const hang = time.Second
	every := heartbeatInterval(hang)
	h := newWDHarness(hang, 0, time.Second, wdT0, worker(10, 0, wdT0), worker(11, 1, wdT0))
	late := []time.Duration{0, 200 * time.Millisecond, 50 * time.Millisecond, 240 * time.Millisecond} // the answer's delay, by round
	h.ticks(wdT0, wdT0.Add(20*time.Second), func(now time.Time) {
		round := int(now.Sub(wdT0) / every)
		for r := round; r >= 0; r-- { // the last answer that came by now
			if at := wdT0.Add(time.Duration(r)*every + late[r%len(late)]); !at.After(now) {
				h.beats[10], h.beats[11] = at, at
				break
			}
		}
	})
	if len(h.sup.calls) != 0 {
		t.Errorf("Replace(%v) of children answering every heartbeat (YOLK_HANG_TIMEOUT 1s), want none\n%s", h.sup.calls, h.log.String())
	}
}

// During a reload a hung worker's replacement is put off: said once, tried
// again with a growing wait, and warned about only when it is taken on.
func TestWatchdogPutOffDuringReload(t *testing.T) {
	h := newWDHarness(2*time.Second, 0, time.Second, wdT0, worker(10, 0, wdT0))
	reloading := true
	h.sup.refuse = func(int) error {
		if reloading {
			return supervisor.ErrReloading
		}
		return nil
	}
	h.ticks(wdT0, wdT0.Add(12*time.Second), nil) // silent from 2s on: 10s of reload
	if n := len(h.sup.calls); n == 0 || n > 16 {
		t.Errorf("Replace called %d times in 10s of a reload (a check every %v), want a few: the put-offs back off", n, h.w.every())
	}
	if n := h.count("replacement put off"); n != 1 {
		t.Errorf(`%d "replacement put off" in the log, want 1`, n)
	}
	if n := h.count("worker hung; replacing it"); n != 0 {
		t.Errorf(`%d "worker hung; replacing it" in the log while every replacement was put off, want 0`, n)
	}
	reloading = false
	calls := len(h.sup.calls)
	h.ticks(wdT0.Add(12*time.Second+h.w.every()), wdT0.Add(13*time.Second+h.w.every()), nil)
	if got := h.sup.calls[calls:]; !slices.Equal(got, []int{10}) {
		t.Errorf("Replace(%v) within the second after the reload, want [10]", got)
	}
	if n := h.count("worker hung; replacing it"); n != 1 {
		t.Errorf(`%d "worker hung; replacing it" in the log, want 1, once the replacement is taken on`, n)
	}
	if t.Failed() {
		t.Log(h.log.String())
	}
}

// A budget below a fresh worker's memory: the slot's worker is replaced
// once; its replacement, over the budget within its first window, is not,
// and the log says why once, at Error.
func TestWatchdogMemoryChurn(t *testing.T) {
	h := newWDHarness(0, 4<<20, time.Second, wdT0, worker(10, 0, wdT0.Add(-time.Minute)), worker(11, 1, wdT0.Add(-time.Minute)))
	for pid := range 1000 {
		h.rss[pid] = 30 << 20
	}
	h.rss[11] = 3 << 20 // slot 1 is within budget
	h.ticks(wdT0, wdT0.Add(10*time.Second), nil)
	if !slices.Equal(h.sup.calls, []int{10}) {
		t.Errorf("Replace(%v) in 10s with YOLK_WORKER_MAX_RSS below a fresh worker's memory, want [10]: once", h.sup.calls)
	}
	if n := h.count("YOLK_WORKER_MAX_RSS is below a fresh worker's memory"); n != 1 {
		t.Errorf("%d errors about a budget below a fresh worker's memory, want 1", n)
	}
	if !strings.Contains(h.log.String(), `level=ERROR msg="YOLK_WORKER_MAX_RSS is below`) || !strings.Contains(h.log.String(), "rss=30.0MiB max=4.0MiB") {
		t.Errorf("want the error at Error with the sizes in MiB")
	}
	if t.Failed() {
		t.Log(h.log.String())
	}
}

// A replacement that failed is tried again after the window of its cause:
// the memory window, not the hang timeout.
func TestWatchdogRetryWindow(t *testing.T) {
	h := newWDHarness(30*time.Second, 4<<20, time.Second, wdT0, worker(10, 0, wdT0.Add(-time.Minute)))
	h.rss[10] = 30 << 20
	h.beats[10] = wdT0
	h.sup.refuse = func(int) error { return errors.New("pid 110 not ready within 30s") }
	h.ticks(wdT0, wdT0.Add(5*time.Second), func(now time.Time) { h.beats[10] = now })
	if n := len(h.sup.calls); n < 3 || n > 5 {
		t.Errorf("Replace called %d times in 5s, failing, with YOLK_WORKER_MAX_RSS_FOR 1s and YOLK_HANG_TIMEOUT 30s, want about 4: once a second, the memory window\n%s", n, h.log.String())
	}
}
