package cache

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
)

// MaxKeyLen is the longest key GET /data/{key} looks up, in bytes. A longer
// one gets 404 without a lookup.
const MaxKeyLen = 1024

// The header names the handler sets (canonical form).
const (
	HeaderVersion = "X-Yolk-Version"
	HeaderWorker  = "X-Yolk-Worker"
)

// Pre-built header values and bodies: the handler assigns them instead of
// building new ones for each request. Nobody may modify them.
var (
	headerJSON      = []string{"application/json"}
	headerNoVersion = []string{""}
	headerAllow     = []string{"GET, HEAD"}
	bodyNoData      = []byte(`{"error":"no data yet"}` + "\n")
	bodyNoKey       = []byte(`{"error":"no such key"}` + "\n")
	bodyNotFound    = []byte(`{"error":"not found"}` + "\n")
	bodyNotAllowed  = []byte(`{"error":"method not allowed"}` + "\n")
)

// NewHandler returns the worker's HTTP API over store:
//
//   - GET /data: {"version":..,"lastUpdateBy":..,"updatedAt":..,"items":{..}}
//     and a newline, written from the snapshot's pre-encoded items (no copy);
//   - GET /data/{key}: the key's value, exactly the bytes of
//     Snapshot.Items[key], as application/json; 404 {"error":"no such key"}
//     if there is none. The key is everything after "/data/" in the decoded
//     path, slashes included ("/data/a%2Fb" and "/data/a/b" are both "a/b");
//     a key longer than [MaxKeyLen] bytes gets 404 without a lookup;
//   - before the store holds a snapshot, 503 {"error":"no data yet"} on both;
//   - HEAD as GET without the body; another method: 405; another path: 404.
//
// Every response it writes carries X-Yolk-Version (the version it served, or
// an empty value if there is none) and X-Yolk-Worker (workerID). Error bodies
// are JSON objects with an "error" field. If m is not nil, the handler counts
// its responses in m. Serving GET /data/{key} allocates nothing in the
// handler. The handler is safe for concurrent use.
func NewHandler(store *Store, workerID string, m *Metrics) http.Handler {
	m.serving()
	return &handler{store: store, worker: []string{workerID}, m: m}
}

type handler struct {
	store  *Store
	worker []string // the X-Yolk-Worker header value
	m      *Metrics
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := h.store.Load()
	setHeaders(w.Header(), s, h.worker)

	key, isKey := strings.CutPrefix(r.URL.Path, "/data/")
	switch {
	case !isKey && r.URL.Path != "/data":
		h.write(w, http.StatusNotFound, bodyNotFound)
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		w.Header()["Allow"] = headerAllow
		h.write(w, http.StatusMethodNotAllowed, bodyNotAllowed)
	case s == nil:
		h.write(w, http.StatusServiceUnavailable, bodyNoData)
	case !isKey:
		prefix, items, length := s.data()
		w.Header()["Content-Length"] = length
		w.Header()["Content-Type"] = headerJSON
		w.WriteHeader(http.StatusOK)
		if _, err := w.Write(prefix); err == nil {
			w.Write(items) // an error means the client went away: nothing to do
			io.WriteString(w, dataSuffix)
		}
		h.m.request(http.StatusOK)
	case len(key) > MaxKeyLen:
		h.write(w, http.StatusNotFound, bodyNoKey)
	default:
		v, ok := s.Items[key]
		if !ok {
			h.write(w, http.StatusNotFound, bodyNoKey)
			return
		}
		h.write(w, http.StatusOK, v)
	}
}

func (h *handler) write(w http.ResponseWriter, code int, body []byte) {
	w.Header()["Content-Type"] = headerJSON
	w.WriteHeader(code)
	w.Write(body) // an error means the client went away: nothing to do
	h.m.request(code)
}

// setHeaders sets X-Yolk-Version to the version of s and X-Yolk-Worker to
// worker.
func setHeaders(hd http.Header, s *Snapshot, worker []string) {
	hd[HeaderWorker] = worker
	if s == nil {
		hd[HeaderVersion] = headerNoVersion
		return
	}
	hd[HeaderVersion] = s.header()
}

// WithHeaders returns a handler that sets X-Yolk-Version (the version store
// holds when the request arrives) and X-Yolk-Worker on every response of
// next, for the worker's endpoints outside [NewHandler] (/metrics, /healthz,
// /readyz).
func WithHeaders(store *Store, workerID string, next http.Handler) http.Handler {
	worker := []string{workerID}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setHeaders(w.Header(), store.Load(), worker)
		next.ServeHTTP(w, r)
	})
}

// NewFastLookup returns the answers of GET /data/{key} for a worker's fast
// path (yolk.Worker.HandleFast): for a key the store's snapshot holds, the
// header lines and body [NewHandler] sends, counted in m as its responses
// are; for anything else (another path, no snapshot, no such key), ok false,
// for the handler to answer. It allocates nothing once a snapshot's header
// lines are made, at its first request. Safe for concurrent use.
func NewFastLookup(store *Store, workerID string, m *Metrics) func(path []byte) (header, body []byte, ok bool) {
	m.serving()
	worker := []string{workerID}
	var last atomic.Pointer[fastHeader]
	return func(path []byte) ([]byte, []byte, bool) {
		key, ok := bytes.CutPrefix(path, []byte("/data/"))
		s := store.Load()
		if !ok || s == nil || len(key) > MaxKeyLen {
			return nil, nil, false
		}
		v, ok := s.Items[string(key)]
		if !ok {
			return nil, nil, false
		}
		h := last.Load()
		if h == nil || h.s != s {
			hd := http.Header{"Content-Type": headerJSON} // as the handler's write
			setHeaders(hd, s, worker)
			var b bytes.Buffer
			hd.Write(&b)
			h = &fastHeader{s: s, lines: b.Bytes()}
			last.Store(h)
		}
		m.request(http.StatusOK)
		return h.lines, v, true
	}
}

// fastHeader is a snapshot's header lines for the fast path.
type fastHeader struct {
	s     *Snapshot
	lines []byte
}
