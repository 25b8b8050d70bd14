package supervisor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"syscall"
)

// Reload replaces the workers one at a time: it starts a new worker, waits
// until it is ready (ReadyTimeout), then stops the old one (SIGTERM, SIGKILL
// after ShutdownTimeout) without restarting it, then goes on with the next.
// If a new worker fails to become ready, Reload stops there and returns the
// error with that worker's last stderr lines; the old workers not yet
// replaced keep running. Cancelling ctx abandons the reload the same way (a
// new worker still starting is stopped).
//
// Reloads do not queue: while one runs, Reload returns ErrReloading at once.
// While a Replace runs (one worker's start: short), Reload waits for it to
// end, or for ctx. Before Run has every child ready, while it stops and after
// it returned, Reload returns ErrNotRunning. Safe for concurrent use.
func (s *Supervisor) Reload(ctx context.Context) error {
	s.mu.Lock()
	for s.busy == ErrReplacing {
		idle := s.idle
		s.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.mu.Lock()
	}
	if err := s.claim(ErrReloading); err != nil {
		s.mu.Unlock()
		return err
	}
	olds := slices.Clone(s.workers)
	s.mu.Unlock()
	defer s.release()
	s.log.Info("reloading workers", "count", len(olds))
	for i, old := range olds {
		if err := s.replace(ctx, old, StopGraceful, false); err != nil {
			return fmt.Errorf("reload worker %d of %d: %w", i+1, len(olds), err)
		}
	}
	s.log.Debug("workers replaced", "count", len(olds))
	return nil
}

// claim marks the supervisor busy with a rolling change (ErrReloading or
// ErrReplacing), or returns why it cannot start one. s.mu is held.
func (s *Supervisor) claim(what error) error {
	switch {
	case s.phase != phaseRunning || !s.allReady || s.stopping:
		return ErrNotRunning
	case s.busy != nil:
		return s.busy
	}
	s.busy, s.idle = what, make(chan struct{})
	return nil
}

func (s *Supervisor) release() {
	s.mu.Lock()
	s.busy = nil
	close(s.idle)
	s.mu.Unlock()
}

// Stop says how Replace stops the child it replaces.
type Stop int

const (
	// StopGraceful: SIGTERM, and SIGKILL after ShutdownTimeout. A worker
	// finishes its requests: nothing fails.
	StopGraceful Stop = iota
	// StopQuit: SIGQUIT, then SIGCONT so that a stopped process runs too (a Go
	// program writes every goroutine's stack on stderr and exits), and SIGKILL
	// to the process group after QuitTimeout. For a child that is stuck: its
	// requests under way are lost, and its dump says where it was stuck.
	StopQuit
)

func (h Stop) String() string {
	if h == StopQuit {
		return "quit"
	}
	return "graceful"
}

// Replace replaces the child with that pid. A worker is replaced through the
// rolling path: a new worker starts in the same slot (Status shows it next to
// the old one, with the old one's Slot and its Restarts plus one), and only
// once it is ready is the old one stopped as how says; Replace returns when
// the old one is reaped. The agent, of which there is only ever one, is
// stopped as how says and its slot restarts it at once (no backoff when it had
// been ready for StableAfter); Replace returns when the old one is reaped,
// before the new one is ready.
//
// If the new worker fails to become ready, Replace returns the error with its
// last stderr lines and the old worker keeps running. Cancelling ctx abandons
// the replacement the same way. Replace returns at once, having done nothing,
// ErrNoChild for a pid that is not a child, ErrReloading or ErrReplacing while
// a Reload or another Replace runs, and ErrNotRunning as Reload does;
// otherwise it calls claimed, if not nil, before it starts or stops anything
// (where to log that the replacement begins, and why). Safe for concurrent use.
func (s *Supervisor) Replace(ctx context.Context, pid int, how Stop, claimed func()) error {
	s.mu.Lock()
	var sl *slot
	for _, w := range append([]*slot{s.agent}, s.workers...) {
		if w != nil && w.cur != nil && w.cur.pid == pid {
			sl = w
		}
	}
	err := s.claim(ErrReplacing)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	defer s.release()
	if sl == nil {
		return ErrNoChild
	}
	if claimed != nil {
		claimed()
	}
	if sl.spec == &s.cfg.Agent {
		return s.restartNow(ctx, sl, pid, how)
	}
	return s.replace(ctx, sl, how, true)
}

// restartNow stops the current child of sl, if it is still pid, as how says
// and returns once it is reaped (or ctx is done); the slot's goroutine
// restarts it. It returns ErrNoChild when sl's child is no longer pid (it
// exited and was restarted since Replace found it): the new one is not the
// one asked for.
func (s *Supervisor) restartNow(ctx context.Context, sl *slot, pid int, how Stop) error {
	s.mu.Lock()
	c := sl.cur
	s.mu.Unlock()
	if c == nil || c.pid != pid {
		return ErrNoChild
	}
	done := make(chan struct{})
	s.wg.Go(func() { // ends once c is reaped, which the slot's goroutine waits for too
		defer close(done)
		s.kill(sl, c, how)
	})
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// replace starts a worker slot next to old, waits until its child is ready,
// then retires old (stopped as how says) and waits until it is stopped. The
// new slot counts one restart more than old when restart is set.
func (s *Supervisor) replace(ctx context.Context, old *slot, how Stop, restart bool) error {
	first := make(chan error, 1)
	nw := s.spawn(&s.cfg.Worker, old, first)
	if nw == nil {
		return ErrNotRunning
	}
	if restart {
		s.mu.Lock()
		nw.restarts = old.restarts + 1
		s.mu.Unlock()
	}
	select {
	case err := <-first:
		if errors.Is(err, errStopped) {
			return ErrNotRunning
		}
		if err != nil {
			return err
		}
	case <-ctx.Done():
		nw.retireNow() // Run's wait group owns its goroutine
		return ctx.Err()
	}
	s.mu.Lock()
	old.how = how
	s.mu.Unlock()
	old.retireNow()
	select {
	case <-old.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// kill stops c as how says and returns once it is reaped. For StopGraceful
// that is stop; for StopQuit, SIGQUIT and SIGCONT (a stopped process dumps its
// goroutines too), then SIGKILL after QuitTimeout.
func (s *Supervisor) kill(sl *slot, c *child, how Stop) {
	if how != StopQuit {
		s.stop(sl, c)
		return
	}
	s.terminate(sl, c, s.cfg.QuitTimeout, "child did not exit after SIGQUIT; killing it", syscall.SIGQUIT, syscall.SIGCONT)
}
