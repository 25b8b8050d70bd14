package supervisor

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A slot is one supervised place for a child: the agent, or one worker. Its
// goroutine (runSlot) starts the child, waits for it to be ready, restarts it
// after an exit and stops it when the slot is retired. A Reload replaces a
// worker slot by a new one.
type slot struct {
	spec       *Spec
	index      int           // a worker's place, 0 to Workers-1: a replacement takes its predecessor's
	retire     chan struct{} // closed to stop the child for good
	retireOnce sync.Once
	done       chan struct{} // closed when the goroutine has ended and its child is reaped

	// guarded by Supervisor.mu
	cur      *child // the current process, nil while in backoff
	state    string
	restarts int
	how      Stop // how the child is stopped once the slot is retired
}

func (sl *slot) retireNow() { sl.retireOnce.Do(func() { close(sl.retire) }) }

func (sl *slot) retired() bool {
	select {
	case <-sl.retire:
		return true
	default:
		return false
	}
}

// childError says why a child failed: what happened, its exit status if
// any, and for a failed first start its last stderr lines.
type childError struct {
	pid  int
	what string
	err  error
	tail []string
}

func (e *childError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pid %d %s", e.pid, e.reason())
	if len(e.tail) > 0 {
		b.WriteString("; last stderr lines:")
		for _, l := range e.tail {
			b.WriteString("\n\t")
			b.WriteString(l)
		}
	}
	return b.String()
}

// reason is the message without pid and stderr lines, for logs.
func (e *childError) reason() string {
	if e.err == nil {
		return e.what
	}
	return e.what + ": " + e.err.Error()
}

func (e *childError) Unwrap() error { return e.err }

// spawn creates a slot for spec and starts its goroutine. A worker slot goes
// right after `after` in the worker list (a reload), else at the end. The
// result of the slot's first start (nil once ready) is sent on first, and a
// failed first start ends the slot instead of restarting. spawn returns nil
// once the supervisor is stopping.
func (s *Supervisor) spawn(spec *Spec, after *slot, first chan<- error) *slot {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return nil
	}
	sl := &slot{spec: spec, retire: make(chan struct{}), done: make(chan struct{}), state: StateStarting}
	switch i := indexOf(s.workers, after); {
	case spec == &s.cfg.Agent:
		s.agent = sl
	case i >= 0:
		sl.index = after.index
		s.workers = slices.Insert(s.workers, i+1, sl)
	default:
		sl.index = len(s.workers)
		s.workers = append(s.workers, sl)
	}
	s.wg.Go(func() { s.runSlot(sl, first) })
	return sl
}

func indexOf(slots []*slot, sl *slot) int {
	if sl == nil {
		return -1
	}
	return slices.Index(slots, sl)
}

func (s *Supervisor) remove(sl *slot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sl.cur = nil
	if s.agent == sl {
		s.agent = nil
	}
	if i := indexOf(s.workers, sl); i >= 0 {
		s.workers = slices.Delete(s.workers, i, i+1)
	}
}

func (s *Supervisor) setState(sl *slot, state string) {
	s.mu.Lock()
	sl.state = state
	s.mu.Unlock()
}

// runSlot is the slot's goroutine: start, wait ready, watch, restart after
// backoff, until the slot is retired. Every child it starts is reaped before
// it starts another or returns.
func (s *Supervisor) runSlot(sl *slot, first chan<- error) {
	defer close(sl.done)
	defer s.remove(sl)
	b := backoff{min: s.cfg.BackoffMin, max: s.cfg.BackoffMax, reset: s.cfg.BackoffReset, stable: s.cfg.StableAfter}
	for {
		c, err := s.startChild(sl)
		if err == nil {
			err = s.awaitReady(sl, c)
		}
		if first != nil {
			var ce *childError
			if errors.As(err, &ce) && c != nil {
				ce.tail = c.tail.lines()
			}
			if err != nil {
				s.remove(sl) // gone from Status before the caller hears of it
				first <- err
				return
			}
			first <- nil
			first = nil
		}
		if err == nil {
			err = s.watch(sl, c)
		}
		if errors.Is(err, errStopped) || !s.restart(sl, c, err, &b) {
			return
		}
	}
}

// awaitReady waits until c is ready. A child not ready within ReadyTimeout
// is killed. It returns errStopped when the slot was retired (c is stopped),
// else nil or a *childError; c is reaped whenever it does not return nil.
func (s *Supervisor) awaitReady(sl *slot, c *child) error {
	t := time.NewTimer(s.cfg.ReadyTimeout)
	defer t.Stop()
	select {
	case <-c.ready:
		c.readyAt = time.Now()
		s.setState(sl, StateReady)
		s.log.Info("child ready", "role", sl.spec.Role, "pid", c.pid)
		return nil
	case <-c.exited:
		return &childError{pid: c.pid, what: "exited before ready", err: c.exitErr}
	case <-t.C:
		s.signal(c, syscall.SIGKILL)
		<-c.exited
		return &childError{pid: c.pid, what: fmt.Sprintf("not ready within %s", s.cfg.ReadyTimeout)}
	case <-sl.retire:
		s.stop(sl, c)
		return errStopped
	}
}

// watch waits until the ready child c exits (a *childError) or the slot is
// retired (errStopped, c stopped).
func (s *Supervisor) watch(sl *slot, c *child) error {
	select {
	case <-c.exited:
		return &childError{pid: c.pid, what: "exited", err: c.exitErr}
	case <-sl.retire:
		s.mu.Lock()
		how := sl.how
		s.mu.Unlock()
		s.kill(sl, c, how)
		return errStopped
	}
}

// stop sends SIGTERM to c's process group, waits up to ShutdownTimeout, then
// sends SIGKILL, and returns once c is reaped.
func (s *Supervisor) stop(sl *slot, c *child) {
	s.terminate(sl, c, s.cfg.ShutdownTimeout, "child did not stop in time; killing it", syscall.SIGTERM)
}

// terminate sends sigs to c's process group, waits up to timeout, then logs late and
// sends SIGKILL, and returns once c is reaped.
func (s *Supervisor) terminate(sl *slot, c *child, timeout time.Duration, late string, sigs ...syscall.Signal) {
	s.setState(sl, StateStopping)
	for _, sig := range sigs {
		s.signal(c, sig)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.exited:
	case <-t.C:
		s.log.Warn(late, "role", sl.spec.Role, "pid", c.pid, "timeout", timeout)
		s.signal(c, syscall.SIGKILL)
		<-c.exited
	case <-s.killCh: // Kill has sent SIGKILL to every child
		<-c.exited
	}
	s.log.Info("child stopped", "role", sl.spec.Role, "pid", c.pid, "err", c.exitErr)
}

// restart logs the exit of c (nil when it never started) and waits out the
// backoff, none when c was ready for StableAfter. It reports false when the
// slot was retired meanwhile.
func (s *Supervisor) restart(sl *slot, c *child, err error, b *backoff) bool {
	if sl.retired() {
		return false
	}
	now := time.Now()
	var ready time.Time
	started, pid, tail := now, 0, []string(nil)
	if c != nil {
		started, ready, pid, tail = c.started, c.readyAt, c.pid, c.tail.lines()
	}
	wait, exits := b.exited(started, ready, now)
	if ce, ok := err.(*childError); ok {
		err = errors.New(ce.reason()) // the pid is logged on its own
	}
	s.mu.Lock()
	sl.cur, sl.state = nil, StateBackoff
	restarts := sl.restarts
	s.mu.Unlock()
	attrs := []any{"role", sl.spec.Role, "pid", pid, "err", err, "restarts", restarts, "exits", exits, "wait", wait.Round(time.Millisecond).String()}
	if exits >= s.cfg.CrashLoopExits {
		s.log.Error("child is crash looping; restarting it after backoff",
			append(attrs, "stderr", strings.Join(tail, "\n"))...)
	} else {
		s.log.Warn("child exited; restarting it after backoff", attrs...)
	}
	if !sleep(sl.retire, wait) {
		return false
	}
	s.mu.Lock()
	sl.restarts++
	sl.state = StateStarting
	s.mu.Unlock()
	return true
}

// signal sends sig to c's process group unless c has been reaped.
func (s *Supervisor) signal(c *child, sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.children[c.pid] == c {
		_ = syscall.Kill(-c.pid, sig)
	}
}
