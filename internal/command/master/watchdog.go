package master

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	healthsock "github.com/yolkgo/yolk/internal/health"
	"github.com/yolkgo/yolk/internal/masterapi"
	"github.com/yolkgo/yolk/internal/procstat"
	"github.com/yolkgo/yolk/supervisor"
)

// The watchdog replaces, in fork mode, a child that is alive but stuck, and a
// worker that holds too much memory.
//
// A child is stuck when, for YOLK_HANG_TIMEOUT, no heartbeat came back on the
// bus (counted from its last one, or from when it was first seen ready if
// none came since) and its own health socket does not answer GET /healthz
// either (the probe, over a unix socket, is made only when heartbeats are
// missing: a child cut off from the bus but serving is left alone), or when a
// worker's heartbeat says it is stalled (its HTTP requests in flight made no
// progress for that long: its handler is deadlocked, though the bus still
// reaches it). The master pings every heartbeatInterval, a few times per hang
// timeout. A stuck worker is replaced through the rolling path: its
// replacement is ready before it gets SIGQUIT (and SIGCONT, so that a stopped
// one runs), which makes a Go program write its goroutines' stacks in the log
// and exit; SIGKILL follows after a few seconds. The agent, which has no
// twin, gets SIGQUIT, then SIGKILL, and restarts at once.
//
// A worker above YOLK_WORKER_MAX_RSS for YOLK_WORKER_MAX_RSS_FOR is replaced
// through the rolling path too, but stopped gracefully: it finishes its
// requests, and none fails. When the replacement in a slot is itself above
// the budget within its first window, the budget is below what a fresh worker
// needs: the watchdog says so once, at Error, and replaces that slot for
// memory no more.
//
// Replacements are one at a time and never during a reload: one put off is
// tried again after a wait that doubles up to a second. A child whose
// replacement failed is tried again only after the window of its cause (the
// hang timeout, or the memory window).
type watchdog struct {
	hang      time.Duration // 0: no hang watch
	maxRSS    uint64        // 0: no memory budget
	maxRSSFor time.Duration
	sup       replacer
	beat      func(id string) (masterapi.Heartbeat, time.Time, bool)
	sockets   *healthSockets
	rss       func(pid int) (uint64, error)
	log       *slog.Logger

	ready  map[int]time.Time // when each child was first seen ready
	over   map[int]time.Time // since when each worker is above maxRSS
	tried  map[int]attempt   // the last failed replacement of each pid
	putOff map[int]attempt   // replacements put off by a reload: n so far, and when to try again
	// By worker slot: replaced for memory before; no longer replaced for memory.
	memReplaced, memOff map[int]bool
}

// attempt is a replacement that did not happen: when it is due again, why
// it was wanted, and how many times it was put off.
type attempt struct {
	next  time.Time
	cause string
	n     int
}

// replacer is what the watchdog needs of the supervisor.
type replacer interface {
	Status() []supervisor.ChildStatus
	Replace(ctx context.Context, pid int, how supervisor.Stop, claimed func()) error
}

const (
	// probeTimeout bounds the health probe of a silent child: the kernel
	// accepts the connection of a stopped process, and nobody answers.
	probeTimeout = 250 * time.Millisecond
	// putOffMax is the longest wait before a replacement put off by a reload
	// is tried again.
	putOffMax = time.Second
)

// heartbeatInterval is how often the master pings its children: a quarter of
// the hang timeout, from 250ms to heartbeatEvery, so that a child misses a few
// heartbeats before it counts as silent.
func heartbeatInterval(hang time.Duration) time.Duration {
	if hang <= 0 {
		return heartbeatEvery
	}
	return min(max(hang/4, 250*time.Millisecond), heartbeatEvery)
}

func newWatchdog(cfg config, sup replacer, mdl *model, sockets *healthSockets, log *slog.Logger) *watchdog {
	return &watchdog{
		hang: cfg.HangTimeout, maxRSS: uint64(cfg.WorkerMaxRSS), maxRSSFor: cfg.WorkerMaxRSSFor,
		sup: sup, beat: mdl.heartbeat, sockets: sockets, log: log,
		rss: func(pid int) (uint64, error) {
			u, err := procstat.Of(pid)
			return u.RSS, err
		},
		ready:       make(map[int]time.Time),
		over:        make(map[int]time.Time),
		tried:       make(map[int]attempt),
		putOff:      make(map[int]attempt),
		memReplaced: make(map[int]bool),
		memOff:      make(map[int]bool),
	}
}

// on reports whether there is anything to watch.
func (w *watchdog) on() bool { return w.hang > 0 || w.maxRSS > 0 }

// every is how often the watchdog looks: often enough that a stuck child is
// replaced within a small part of the hang timeout after it is found.
func (w *watchdog) every() time.Duration {
	d := time.Second
	if w.hang > 0 {
		d = min(d, max(w.hang/20, 100*time.Millisecond))
	}
	if w.maxRSS > 0 {
		d = min(d, max(w.maxRSSFor/10, 100*time.Millisecond))
	}
	return d
}

// window is how long a child whose replacement for cause failed is left
// alone before it is tried again.
func (w *watchdog) window(cause string) time.Duration {
	if cause == "memory" {
		return w.maxRSSFor
	}
	return w.hang
}

// run looks at every child each interval until ctx is done.
func (w *watchdog) run(ctx context.Context) {
	t := time.NewTicker(w.every())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.check(ctx, time.Now())
	}
}

// check replaces at most one child: the first found stuck, else the first
// found over its memory budget for long enough.
func (w *watchdog) check(ctx context.Context, now time.Time) {
	children := w.sup.Status()
	live := make(map[int]bool, len(children))
	for _, c := range children {
		live[c.PID] = true
	}
	for pid := range w.ready {
		if !live[pid] {
			delete(w.ready, pid)
			delete(w.over, pid)
			delete(w.tried, pid)
			delete(w.putOff, pid)
		}
	}
	for _, c := range children {
		if c.PID == 0 || c.State != supervisor.StateReady {
			continue // starting, stopping or in backoff: the supervisor's watch
		}
		if _, ok := w.ready[c.PID]; !ok {
			w.ready[c.PID] = now
		}
		if a, ok := w.tried[c.PID]; ok && now.Before(a.next) {
			continue
		}
		if a, ok := w.putOff[c.PID]; ok && now.Before(a.next) {
			continue
		}
		if why := w.stuck(ctx, c, now); why != "" {
			w.replace(ctx, c, supervisor.StopQuit, why, "stuck", now)
			return
		}
		if why := w.tooBig(c, now); why != "" {
			w.replace(ctx, c, supervisor.StopGraceful, why, "memory", now)
			return
		}
	}
}

// stuck says why the child c is stuck at now, or "".
func (w *watchdog) stuck(ctx context.Context, c supervisor.ChildStatus, now time.Time) string {
	if w.hang <= 0 {
		return ""
	}
	// from its last beat, or from when it started or was seen ready: its
	// first beat may still be on its way
	last := c.Started
	if r := w.ready[c.PID]; r.After(last) {
		last = r
	}
	hb, at, ok := w.beat(strconv.Itoa(c.PID))
	if ok && at.After(last) {
		last = at
	}
	silent := now.Sub(last) >= w.hang
	stalled := ok && hb.Stalled != ""
	if !silent && !stalled {
		return ""
	}
	if path := w.sockets.path(c.PID); path != "" {
		pctx, cancel := context.WithTimeout(ctx, min(probeTimeout, w.hang/4))
		err := healthsock.Check(pctx, path, false, io.Discard)
		cancel()
		if err == nil {
			w.log.Debug("no heartbeat, but the health socket answers", "role", c.Role, "pid", c.PID, "silent", now.Sub(last).Round(time.Millisecond).String())
			return ""
		}
	}
	if silent {
		why := fmt.Sprintf("answered no heartbeat for %s", now.Sub(last).Round(100*time.Millisecond))
		if w.sockets.path(c.PID) != "" {
			why += " and no health probe"
		}
		return why
	}
	return "is stalled: " + hb.Stalled
}

// tooBig says why the worker c is over its memory budget for too long at now, or "".
func (w *watchdog) tooBig(c supervisor.ChildStatus, now time.Time) string {
	if w.maxRSS == 0 || c.Role != "worker" || w.memOff[c.Slot] {
		return ""
	}
	rss, err := w.rss(c.PID)
	if err != nil || rss <= w.maxRSS {
		delete(w.over, c.PID)
		return ""
	}
	since, ok := w.over[c.PID]
	if !ok {
		w.over[c.PID] = now
		w.log.Info("worker above YOLK_WORKER_MAX_RSS", "pid", c.PID, "slot", c.Slot,
			"rss", mebibytes(rss), "max", mebibytes(w.maxRSS))
		return ""
	}
	if now.Sub(since) < w.maxRSSFor {
		return ""
	}
	if w.memReplaced[c.Slot] && since.Sub(c.Started) < w.maxRSSFor {
		w.memOff[c.Slot] = true
		delete(w.over, c.PID)
		w.log.Error("YOLK_WORKER_MAX_RSS is below a fresh worker's memory: this slot's workers are no longer replaced for memory; raise it",
			"pid", c.PID, "slot", c.Slot, "rss", mebibytes(rss), "max", mebibytes(w.maxRSS),
			"overAfter", since.Sub(c.Started).Round(100*time.Millisecond).String())
		return ""
	}
	return fmt.Sprintf("has been above YOLK_WORKER_MAX_RSS (%s) for %s (resident: %s)",
		mebibytes(w.maxRSS), now.Sub(since).Round(100*time.Millisecond), mebibytes(rss))
}

// replace replaces c, found at now, and logs what happened and why. The
// messages are fixed (a log search finds them); the pid, the slot and why
// are attributes. The warning that c is replaced is logged once the
// supervisor took the replacement on, not when it put it off.
func (w *watchdog) replace(ctx context.Context, c supervisor.ChildStatus, how supervisor.Stop, why, cause string, now time.Time) {
	state, verb := "hung", "replacing it"
	if cause == "memory" {
		state = "over its memory budget"
	}
	if c.Role == "agent" {
		verb = "restarting it"
	}
	attrs := []any{"role", c.Role, "pid", c.PID, "slot", c.Slot, "cause", cause, "stop", how.String()}
	start := time.Now()
	err := w.sup.Replace(ctx, c.PID, how, func() {
		w.log.Warn(c.Role+" "+state+"; "+verb, append(attrs, "why", c.Role+" "+why)...)
	})
	switch {
	case err == nil:
	case errors.Is(err, supervisor.ErrReloading), errors.Is(err, supervisor.ErrReplacing):
		p := w.putOff[c.PID]
		if p.n == 0 {
			w.log.Info("replacement put off", append(attrs, "why", c.Role+" "+why, "err", err)...)
		}
		p.n++
		p.next = now.Add(min(w.every()<<min(p.n, 8), putOffMax))
		w.putOff[c.PID] = p
		return
	case errors.Is(err, supervisor.ErrNoChild), errors.Is(err, supervisor.ErrNotRunning), ctx.Err() != nil:
		return // gone, or stopping
	default:
		w.tried[c.PID] = attempt{next: now.Add(time.Since(start) + w.window(cause)), cause: cause}
		w.log.Error("replace "+c.Role, append(attrs, "err", err)...)
		return
	}
	delete(w.over, c.PID)
	delete(w.putOff, c.PID)
	if cause == "memory" {
		w.memReplaced[c.Slot] = true
	}
	took := time.Since(start).Round(time.Millisecond).String()
	if c.Role == "agent" {
		w.log.Info("agent stopped; its slot restarts it", append(attrs, "took", took)...)
		return
	}
	by := 0
	for _, s := range w.sup.Status() {
		if s.Role == c.Role && s.Slot == c.Slot && s.PID != c.PID {
			by = s.PID
		}
	}
	w.log.Info(c.Role+" replaced", append(attrs, "by", by, "took", took)...)
}

// healthSockets gives each child of a fork-mode master a health socket of its
// own in the run directory (YOLK_HEALTH_SOCKET in its environment), which the
// watchdog probes, and removes it once the child has exited. A run directory
// whose path is too long for a unix socket gives none. Safe for concurrent use.
type healthSockets struct {
	dir string // "" when the children get no socket

	mu    sync.Mutex
	seq   int
	byPID map[int]string
}

func newHealthSockets(runDir string, log *slog.Logger) *healthSockets {
	hs := &healthSockets{byPID: make(map[int]string)}
	dir, err := filepath.Abs(runDir)
	switch {
	case err != nil:
		log.Warn("no health sockets for the children", "err", err)
	case len(filepath.Join(dir, "h-0000000000.sock")) > 107: // sun_path
		log.Warn("no health sockets for the children: the run directory's path is too long for a unix socket; the watchdog goes by heartbeats alone", "runDir", dir)
	default:
		hs.dir = dir
	}
	return hs
}

// prepare wraps a supervisor.Config.Prepare: the child gets a socket path.
func (hs *healthSockets) prepare(next func(string) ([]string, func(int), func(), error)) func(string) ([]string, func(int), func(), error) {
	return func(role string) ([]string, func(int), func(), error) {
		env, started, exited, err := next(role)
		if err != nil || hs.dir == "" {
			return env, started, exited, err
		}
		hs.mu.Lock()
		hs.seq++
		path := filepath.Join(hs.dir, fmt.Sprintf("h-%d.sock", hs.seq))
		hs.mu.Unlock()
		var pid int // set by started, read by gone, called after it
		return append(env, "YOLK_HEALTH_SOCKET="+path), func(p int) {
				pid = p
				hs.mu.Lock()
				hs.byPID[p] = path
				hs.mu.Unlock()
				if started != nil {
					started(p)
				}
			}, func() {
				hs.mu.Lock()
				delete(hs.byPID, pid)
				hs.mu.Unlock()
				_ = os.Remove(path) // left by a child that was killed
				if exited != nil {
					exited()
				}
			}, nil
	}
}

// path is the health socket of the child pid, or "".
func (hs *healthSockets) path(pid int) string {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return hs.byPID[pid]
}
