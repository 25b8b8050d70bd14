package yolk

import (
	"context"
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
