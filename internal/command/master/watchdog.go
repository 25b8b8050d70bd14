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

	"github.com/yolkgo/yolk/internal/cli"
	healthsock "github.com/yolkgo/yolk/internal/health"
	"github.com/yolkgo/yolk/internal/masterapi"
	"github.com/yolkgo/yolk/internal/procstat"
	"github.com/yolkgo/yolk/supervisor"
)

// The watchdog replaces, in fork mode, a child that is alive but stuck, and a
// worker that holds too much memory.
//
// A child is stuck when, for YOLK_HANG_TIMEOUT, no heartbeat came back on the
// bus and its own health socket does not answer GET /healthz either (the probe,
// over a unix socket, is made only when heartbeats are missing: a child cut
// off from the bus but serving is left alone), or when a worker's heartbeat says
// it is stalled (its HTTP requests in flight saw none complete for that long:
// its handler is deadlocked, though the bus still reaches it). A stuck worker
// is replaced through the rolling path: its replacement is ready before it gets
// SIGQUIT (and SIGCONT, so that a stopped one runs), which makes a Go program
// write its goroutines' stacks in the log and exit; SIGKILL follows after a few
// seconds. The agent, which has no twin, gets SIGQUIT, then SIGKILL, and
// restarts at once.
//
// A worker above YOLK_WORKER_MAX_RSS for YOLK_WORKER_MAX_RSS_FOR is replaced
// through the rolling path too, but stopped gracefully: it finishes its
// requests, and none fails.
//
// Replacements are one at a time, never during a reload, and a child whose
// replacement failed is tried again only after a hang timeout (or the memory
// window).
type watchdog struct {
	hang      time.Duration // 0: no hang watch
	maxRSS    uint64        // 0: no memory budget
	maxRSSFor time.Duration
	sup       replacer
	beat      func(id string) (masterapi.Heartbeat, time.Time, bool)
	sockets   *healthSockets
	rss       func(pid int) (uint64, error)
	log       *slog.Logger

	over  map[int]time.Time // since when each worker is above maxRSS
	tried map[int]time.Time // when a replacement of each pid last failed
}

// replacer is what the watchdog needs of the supervisor.
type replacer interface {
	Status() []supervisor.ChildStatus
	Replace(ctx context.Context, pid int, how supervisor.Stop, claimed func()) error
}

func newWatchdog(cfg config, sup replacer, mdl *model, sockets *healthSockets, log *slog.Logger) *watchdog {
	return &watchdog{
		hang: cfg.HangTimeout, maxRSS: uint64(cfg.WorkerMaxRSS), maxRSSFor: cfg.WorkerMaxRSSFor,
		sup: sup, beat: mdl.heartbeat, sockets: sockets, log: log,
		rss: func(pid int) (uint64, error) {
			u, err := procstat.Of(pid)
			return u.RSS, err
		},
		over:  make(map[int]time.Time),
		tried: make(map[int]time.Time),
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
	for pid := range w.over {
		if !live[pid] {
			delete(w.over, pid)
		}
	}
	for pid := range w.tried {
		if !live[pid] {
			delete(w.tried, pid)
		}
	}
	for _, c := range children {
		if c.PID == 0 || c.State != supervisor.StateReady {
			continue // starting, stopping or in backoff: the supervisor's watch
		}
		if at, ok := w.tried[c.PID]; ok && now.Sub(at) < max(w.hang, w.maxRSSFor) {
			continue
		}
		if why := w.stuck(ctx, c, now); why != "" {
			w.replace(ctx, c, supervisor.StopQuit, why, "stuck")
			return
		}
		if why := w.tooBig(c, now); why != "" {
			w.replace(ctx, c, supervisor.StopGraceful, why, "memory")
			return
		}
	}
}

// stuck says why the child c is stuck at now, or "".
func (w *watchdog) stuck(ctx context.Context, c supervisor.ChildStatus, now time.Time) string {
	if w.hang <= 0 {
		return ""
	}
	last := c.Started
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
		pctx, cancel := context.WithTimeout(ctx, min(time.Second, w.hang/2))
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
	if w.maxRSS == 0 || c.Role != "worker" {
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
			"rss", cli.ByteSize(rss).String(), "max", cli.ByteSize(w.maxRSS).String())
		return ""
	}
	if now.Sub(since) < w.maxRSSFor {
		return ""
	}
	return fmt.Sprintf("has been above YOLK_WORKER_MAX_RSS (%s) for %s (resident: %s)",
		cli.ByteSize(w.maxRSS), now.Sub(since).Round(100*time.Millisecond), mib(rss))
}

func mib(n uint64) string { return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20)) }

// replace replaces c and logs what happened and why. The messages are fixed
// (a log search finds them); the pid, the slot and why are attributes.
func (w *watchdog) replace(ctx context.Context, c supervisor.ChildStatus, how supervisor.Stop, why, cause string) {
	state, verb := "hung", "replacing it"
	if cause == "memory" {
		state = "over its memory budget"
	}
	if c.Role == "agent" {
		verb = "restarting it"
	}
	attrs := []any{"role", c.Role, "pid", c.PID, "slot", c.Slot, "cause", cause, "stop", how.String()}
	w.log.Warn(c.Role+" "+state+"; "+verb, append(attrs, "why", c.Role+" "+why)...)
	start := time.Now()
	err := w.sup.Replace(ctx, c.PID, how, nil)
	switch {
	case err == nil:
	case errors.Is(err, supervisor.ErrReloading), errors.Is(err, supervisor.ErrReplacing):
		w.log.Info("replacement put off", append(attrs, "err", err)...)
		return
	case errors.Is(err, supervisor.ErrNoChild), errors.Is(err, supervisor.ErrNotRunning), ctx.Err() != nil:
		return // gone, or stopping
	default:
		w.tried[c.PID] = time.Now()
		w.log.Error("replace "+c.Role, append(attrs, "err", err)...)
		return
	}
	delete(w.over, c.PID)
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
