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
//
// It costs a request a few atomic operations and two readings of the clock,
// with no lock and no allocation (BenchmarkStallWatch).
type stallWatch struct {
	timeout  time.Duration
	inflight atomic.Int64
	busy     atomic.Int64 // when inflight last went from 0 to 1 (a monoTime)
	progress atomic.Int64 // when the last completion, write or flush ended (a monoTime)
	writing  atomic.Int64 // handlers inside a write or a flush
}

// progressWriters are reused: a worker wraps every response.
var progressWriters = sync.Pool{New: func() any { return new(progressWriter) }}

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
		s.begin()
		pw := progressWriters.Get().(*progressWriter)
		*pw = progressWriter{ResponseWriter: w, s: s}
		defer func() {
			pw.end()
			*pw = progressWriter{}
			progressWriters.Put(pw)
		}()
		h.ServeHTTP(pw, r)
	})
}

func (s *stallWatch) progressed() { s.progress.Store(monoNow()) }

// monoEpoch and monoNow give the time as nanoseconds on the monotonic clock
// since the process began: one reading of the clock where time.Now takes two
// (the wall clock too).
var monoEpoch = time.Now()

func monoNow() int64 { return int64(time.Since(monoEpoch)) }

// begin counts a request in. From idle, it marks the time first, so that
// whoever sees the request counted (stalled) sees when the worker got busy.
// Another request's arrival is no progress: a deadlocked worker keeps taking
// requests that all block.
func (s *stallWatch) begin() {
	for {
		n := s.inflight.Load()
		if n == 0 {
			s.busy.Store(monoNow())
		}
		if s.inflight.CompareAndSwap(n, n+1) {
			return
		}
	}
}

// stalled returns why the handler is stuck at now, or "".
func (s *stallWatch) stalled(now time.Time) string {
	if s == nil {
		return ""
	}
	n := s.inflight.Load()
	if n <= 0 || s.writing.Load() > 0 {
		return ""
	}
	since := time.Duration(max(s.busy.Load(), s.progress.Load()))
	if d := now.Sub(monoEpoch) - since; d >= s.timeout {
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
	s     *stallWatch
	ended atomic.Bool // the request ends once: at its return or at its hijack
}

// end takes the request out of the count, once.
func (w *progressWriter) end() {
	if w.ended.CompareAndSwap(false, true) {
		w.s.progressed() // before the count: whoever sees it lower sees this
		w.s.inflight.Add(-1)
	}
}

// startWrite and endWrite bracket a write or a flush: a handler inside one
// (a slow client) is progressing, and its end is progress.
func (w *progressWriter) startWrite() { w.s.writing.Add(1) }

func (w *progressWriter) endWrite() {
	w.s.progressed()
	w.s.writing.Add(-1)
}

func (w *progressWriter) Write(b []byte) (int, error) {
	w.startWrite()
	defer w.endWrite()
	return w.ResponseWriter.Write(b)
}

func (w *progressWriter) ReadFrom(r io.Reader) (int64, error) {
	w.startWrite()
	defer w.endWrite()
	return io.Copy(w.ResponseWriter, r) // the server's ReadFrom (sendfile) when it has one
}

func (w *progressWriter) Flush() {
	w.startWrite()
	defer w.endWrite()
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *progressWriter) FlushError() error {
	w.startWrite()
	defer w.endWrite()
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
