package cache

import (
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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

// Metrics are a worker's Prometheus metrics, on a registry of their own
// (nothing is registered globally), labelled with the worker's id. The
// registry also has the Go runtime and process collectors. Metrics are safe
// for concurrent use, and the methods of a nil *Metrics do nothing.
type Metrics struct {
	reg         *prometheus.Registry
	refreshes   *prometheus.CounterVec
	fetches     prometheus.Counter
	fetchErrors prometheus.Counter
	busMessages *prometheus.CounterVec
	version     prometheus.Gauge
	items       prometheus.Gauge
	updated     prometheus.Gauge
	requests    [len(responseCodes)]prometheus.Counter
}

// responseCodes are the status codes the handler writes: the values of
// yolk_http_requests_total's code label.
var responseCodes = [...]int{
	http.StatusOK,
	http.StatusNotFound,
	http.StatusMethodNotAllowed,
	http.StatusServiceUnavailable,
}

// NewMetrics returns the metrics of the worker workerID, which is the value
// of their constant label worker.
func NewMetrics(workerID string) *Metrics {
	labels := prometheus.Labels{"worker": workerID}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels})
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "yolk_cache_refreshes_total", Help: "Snapshots installed, by what caused them.", ConstLabels: labels,
		}, []string{"by"}),
		fetches:     counter("yolk_remote_fetches_total", "Requests to the remote source, answered or not."),
		fetchErrors: counter("yolk_remote_fetch_errors_total", "Requests to the remote source that failed or returned something malformed (the last good snapshot stays)."),
		busMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "yolk_bus_messages_total", Help: "Messages received on the bus, by event.", ConstLabels: labels,
		}, []string{"event"}),
		version: gauge("yolk_cache_version", "The cached version if it is a number, else 0."),
		items:   gauge("yolk_cache_items", "Items in the cached snapshot."),
		updated: gauge("yolk_cache_updated_timestamp_seconds", "When the cached snapshot was installed, in seconds since the epoch."),
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "yolk_http_requests_total", Help: "Responses of the data API, by status code.", ConstLabels: labels,
	}, []string{"code"})
	for i, code := range responseCodes {
		m.requests[i] = requests.WithLabelValues(strconv.Itoa(code))
	}
	m.reg.MustRegister(
		m.refreshes, m.fetches, m.fetchErrors, m.busMessages,
		m.version, m.items, m.updated, requests,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Handler serves the metrics in the Prometheus exposition formats
// (GET /metrics).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Registry returns the registry of m, to add the application's own metrics.
func (m *Metrics) Registry() *prometheus.Registry {
	return m.reg
}

// Refresh counts a snapshot installed because of by (start, force, pull,
// push, catchup): yolk_cache_refreshes_total{by}.
func (m *Metrics) Refresh(by string) {
	if m == nil {
		return
	}
	m.refreshes.WithLabelValues(by).Inc()
}

// Fetch counts a request to the remote source (yolk_remote_fetches_total)
// and, if err is neither nil nor [ErrNotModified], its failure
// (yolk_remote_fetch_errors_total).
func (m *Metrics) Fetch(err error) {
	if m == nil {
		return
	}
	m.fetches.Inc()
	if err != nil && !errors.Is(err, ErrNotModified) {
		m.fetchErrors.Inc()
	}
}

// BusMessage counts a message received on the bus: yolk_bus_messages_total{event}.
// Events are the application's fixed set, so the label stays bounded.
func (m *Metrics) BusMessage(event string) {
	if m == nil {
		return
	}
	m.busMessages.WithLabelValues(event).Inc()
}

// SetSnapshot records the snapshot now served: yolk_cache_version (the
// version if it parses as a number, else 0), yolk_cache_items and
// yolk_cache_updated_timestamp_seconds. SetSnapshot(nil) does nothing.
func (m *Metrics) SetSnapshot(s *Snapshot) {
	if m == nil || s == nil {
		return
	}
	v, err := strconv.ParseFloat(s.Version, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		v = 0
	}
	m.version.Set(v)
	m.items.Set(float64(len(s.Items)))
	if s.UpdatedAt.IsZero() {
		m.updated.Set(0)
	} else {
		m.updated.Set(float64(s.UpdatedAt.UnixNano()) / 1e9)
	}
}

// request counts a response of the handler.
func (m *Metrics) request(code int) {
	if m == nil {
		return
	}
	for i, c := range responseCodes {
		if c == code {
			m.requests[i].Inc()
			return
		}
	}
}
