package metrics

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/yolkgo/yolk/prom"
)

// RequestBuckets are the bounds of yolk_http_request_duration_seconds, in
// seconds: from 100µs (an answer from memory) to 10s.
var RequestBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// epoch is the origin of the request timings: what counts is the difference.
var epoch = time.Now()

// Instrument returns next timed by the histogram
// yolk_http_request_duration_seconds{class}, registered in reg, where class
// is the class of the response's status: 2xx to 5xx, or other. A request
// whose connection the handler hijacks (a websocket) is not timed: it is no
// longer a request. It keeps the response's http.Flusher and http.Hijacker
// (through http.ResponseController). The histogram it also returns times, in
// seconds, a 2xx answer made without next (a worker's fast path).
func Instrument(reg *prom.Registry, next http.Handler) (http.Handler, *prom.Histogram) {
	h := reg.HistogramVec("yolk_http_request_duration_seconds",
		"Time to answer an HTTP request of the application, by class of status code.", RequestBuckets, "class")
	var byClass [6]*prom.Histogram // [2] to [5]: 2xx to 5xx, made at once
	for i := 2; i <= 5; i++ {
		byClass[i] = h.With(strconv.Itoa(i) + "xx")
	}
	// the pool saves an allocation of 32 bytes per request (BenchmarkInstrument)
	pool := sync.Pool{New: func() any { return new(statusWriter) }}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Since(epoch) // the monotonic clock alone: one reading, where time.Now takes two
		sw := pool.Get().(*statusWriter)
		*sw = statusWriter{ResponseWriter: w}
		defer func() {
			code, hijacked := sw.code, sw.hijacked
			*sw = statusWriter{}
			pool.Put(sw)
			if hijacked {
				return
			}
			if code == 0 {
				code = http.StatusOK // nothing written: net/http sends 200
			}
			var o *prom.Histogram
			if class := code / 100; class >= 2 && class <= 5 {
				o = byClass[class]
			} else {
				o = h.With("other") // made when first seen: a status of 600 to 999
			}
			o.Observe((time.Since(epoch) - start).Seconds())
		}()
		next.ServeHTTP(sw, r)
	}), byClass[2]
}

// statusWriter remembers the status code of a response.
type statusWriter struct {
	http.ResponseWriter
	code     int
	hijacked bool
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 { // 1xx are informational: the final status follows
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush keeps streaming responses working for handlers that assert http.Flusher.
func (w *statusWriter) Flush() {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack is http.Hijacker's, for handlers that assert it (websockets).
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	w.hijacked = err == nil
	return c, rw, err
}
