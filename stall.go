package yolk

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
)

// stallWatch tells whether a worker's HTTP handler is stuck: requests are in
// flight and none of them, nor any other, completed for the timeout
// (YOLK_HANG_TIMEOUT). A worker in a deadlock still answers its master's ping,
// which the bus delivers on a goroutine of its own: its heartbeat carries this
// verdict, and its /healthz answers 503 with it, so that the master replaces
// it. A long request while others complete is no stall; a long request alone
// on an idle worker (a stream, a long poll) is: set YOLK_HANG_TIMEOUT above
// the longest one. A nil *stallWatch never stalls. Safe for concurrent use.
type stallWatch struct {
	timeout  time.Duration
	inflight atomic.Int64
	busy     atomic.Int64 // unix nanoseconds when inflight last went from 0 to 1
	done     atomic.Int64 // unix nanoseconds of the last completion
}

// newStallWatch returns a stallWatch, or nil when timeout is 0 (off).
func newStallWatch(timeout time.Duration) *stallWatch {
	if timeout <= 0 {
		return nil
	}
	return &stallWatch{timeout: timeout}
}

// wrap counts h's requests in flight and their completions.
func (s *stallWatch) wrap(h http.Handler) http.Handler {
	if s == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.inflight.Add(1) == 1 {
			s.busy.Store(time.Now().UnixNano())
		}
		defer func() {
			s.done.Store(time.Now().UnixNano())
			s.inflight.Add(-1)
		}()
		h.ServeHTTP(w, r)
	})
}

// stalled returns why the handler is stuck at now, or "".
func (s *stallWatch) stalled(now time.Time) string {
	if s == nil {
		return ""
	}
	n := s.inflight.Load()
	if n <= 0 {
		return ""
	}
	since := time.Unix(0, max(s.busy.Load(), s.done.Load()))
	if d := now.Sub(since); d >= s.timeout {
		return fmt.Sprintf("%d HTTP requests in flight and none completed for %s (YOLK_HANG_TIMEOUT %s)", n, d.Round(100*time.Millisecond), s.timeout)
	}
	return ""
}

// err is stalled as an error, for the health socket's liveness check.
func (s *stallWatch) err() error {
	if why := s.stalled(time.Now()); why != "" {
		return fmt.Errorf("stalled: %s", why)
	}
	return nil
}
