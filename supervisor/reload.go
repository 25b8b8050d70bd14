package supervisor

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
// Before Run has every child ready, while it stops and after it returned,
// Reload returns ErrNotRunning. Safe for concurrent use.
func (s *Supervisor) Reload(ctx context.Context) error {
	if !s.reloadMu.TryLock() {
		return ErrReloading
	}
	defer s.reloadMu.Unlock()
	s.mu.Lock()
	if s.phase != phaseRunning || !s.allReady || s.stopping {
		s.mu.Unlock()
		return ErrNotRunning
	}
	olds := slices.Clone(s.workers)
	s.mu.Unlock()
	s.log.Info("reloading workers", "count", len(olds))
	for i, old := range olds {
		if err := s.replace(ctx, old); err != nil {
			return fmt.Errorf("reload worker %d of %d: %w", i+1, len(olds), err)
		}
	}
	s.log.Debug("workers replaced", "count", len(olds))
	return nil
}

// replace starts a worker slot next to old, waits until its child is ready,
// then retires old and waits until it is stopped.
func (s *Supervisor) replace(ctx context.Context, old *slot) error {
	first := make(chan error, 1)
	nw := s.spawn(&s.cfg.Worker, old, first)
	if nw == nil {
		return ErrNotRunning
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
	old.retireNow()
	select {
	case <-old.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
