package yolk

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// stallWatch tells whether a worker's HTTP handler is stuck: requests are in
// flight and none of them made progress for the timeout (YOLK_HANG_TIMEOUT).
// Progress is a request that completes, or a response that is written to or
// flushed; a request whose handler is inside a write (waiting on a slow
// client) is progressing too. A worker in a deadlock still answers its
// master's ping, which the bus delivers on a goroutine of its own: its
// heartbeat carries this verdict, and its /healthz answers 503 with it, so
// that the master replaces it. A download, a stream of server-sent events or
// a long poll that writes at least once per timeout is no stall; a request
// that writes nothing for the timeout, alone on an idle worker, is: set
// YOLK_HANG_TIMEOUT above the longest such silence. A hijacked connection
// (a websocket) is no longer the server's: its request stops counting. A nil
// *stallWatch never stalls. Safe for concurrent use.
type stallWatch struct {
	timeout  time.Duration
	progress atomic.Int64 // unix nanoseconds of the last completion, write or flush
	writing  atomic.Int64 // handlers inside a write or a flush

	mu       sync.Mutex
	inflight int
	busy     time.Time // when inflight last went from 0 to 1
}

// newStallWatch returns a stallWatch, or nil when timeout is 0 (off).
func newStallWatch(timeout time.Duration) *stallWatch {
	if timeout <= 0 {
		return nil
	}
	return &stallWatch{timeout: timeout}
}

// wrap counts h's requests in flight and their progress.
func (s *stallWatch) wrap(h http.Handler) http.Handler {
	if s == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.inflight++
		if s.inflight == 1 {
			s.busy = time.Now() // with the count: stalled never sees one without the other
		}
		s.mu.Unlock()
		pw := &progressWriter{ResponseWriter: w, s: s}
		defer pw.end()
		h.ServeHTTP(pw, r)
	})
}

func (s *stallWatch) progressed() { s.progress.Store(time.Now().UnixNano()) }

// stalled returns why the handler is stuck at now, or "".
func (s *stallWatch) stalled(now time.Time) string {
	if s == nil {
		return ""
	}
	s.mu.Lock()
	n, busy := s.inflight, s.busy
	s.mu.Unlock()
	if n <= 0 || s.writing.Load() > 0 {
		return ""
	}
	since := time.Unix(0, max(busy.UnixNano(), s.progress.Load()))
	if d := now.Sub(since); d >= s.timeout {
		return fmt.Sprintf("%d HTTP requests in flight and none progressed for %s (YOLK_HANG_TIMEOUT %s)", n, d.Round(100*time.Millisecond), s.timeout)
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

// progressWriter is a request's ResponseWriter under a stallWatch: its
// writes and flushes are progress. It keeps what the server's writer offers:
// http.Flusher, http.Hijacker and io.ReaderFrom as methods, and Unwrap for
// http.ResponseController.
type progressWriter struct {
	http.ResponseWriter
	s    *stallWatch
	once sync.Once // the request ends once: at its return or at its hijack
}

// end takes the request out of the count, once.
func (w *progressWriter) end() {
	w.once.Do(func() {
		w.s.progressed()
		w.s.mu.Lock()
		w.s.inflight--
		w.s.mu.Unlock()
	})
}

// writing marks a write under way; the func it returns marks its end.
func (w *progressWriter) writing() func() {
	w.s.progressed()
	w.s.writing.Add(1)
	return func() {
		w.s.progressed()
		w.s.writing.Add(-1)
	}
}

func (w *progressWriter) Write(b []byte) (int, error) {
	defer w.writing()()
	return w.ResponseWriter.Write(b)
}

func (w *progressWriter) WriteHeader(code int) {
	w.s.progressed()
	w.ResponseWriter.WriteHeader(code)
}

func (w *progressWriter) ReadFrom(r io.Reader) (int64, error) {
	defer w.writing()()
	return io.Copy(w.ResponseWriter, r) // the server's ReadFrom (sendfile) when it has one
}

func (w *progressWriter) Flush() {
	defer w.writing()()
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *progressWriter) FlushError() error {
	defer w.writing()()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *progressWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.end() // the connection is the handler's now, for as long as it likes
	}
	return conn, rw, err
}

func (w *progressWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
