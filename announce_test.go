package yolk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestAnnounce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		var calls, dones atomic.Int32
		send := func(ctx context.Context) error {
			if calls.Add(1) <= 2 { // the master is away for two tries
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		}
		again := make(chan struct{})
		finished := make(chan struct{})
		go func() {
			announce(ctx, send, again, 5*time.Second, discard(), func() { dones.Add(1) })
			close(finished)
		}()
		synctest.Wait()
		time.Sleep(2*5*time.Second + 2*announceRetry)
		synctest.Wait()
		if calls.Load() != 3 || dones.Load() != 1 {
			t.Fatalf("after two failed tries: %d sends, %d done; want 3 and 1", calls.Load(), dones.Load())
		}
		again <- struct{}{} // reconnected to a restarted master
		synctest.Wait()
		if calls.Load() != 4 || dones.Load() != 2 {
			t.Fatalf("after a reconnect: %d sends, %d done; want 4 and 2", calls.Load(), dones.Load())
		}
		cancel()
		<-finished
	})
}

// TestAnnounceStopsWhenRefused: a master that refuses the process (it reads
// an older wire version than the service sends) is not asked again: announce
// returns the refusal, and the process stops.
func TestAnnounceStopsWhenRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		send := func(context.Context) error {
			calls.Add(1)
			return fmt.Errorf("%w: worker 7 reads the bus's wire version 1 at most", errRefused)
		}
		err := announce(t.Context(), send, make(chan struct{}), 5*time.Second, discard(), func() { t.Error("done called") })
		if !errors.Is(err, errRefused) || calls.Load() != 1 {
			t.Fatalf("announce = %v after %d sends; want the refusal after 1", err, calls.Load())
		}
	})
}
