package cache

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"sync"

	"github.com/yolkgo/yolk/prom"
)

// Metrics are the cache's metrics, in a registry of package prom:
// a worker's replica and HTTP API, or the agent's hub, each in its own
// process's registry (yolk.Process.Metrics). They carry no process label:
// the master labels each process's samples with its role and slot when it
// serves them all. Metrics are safe for concurrent use, and the methods of a
// nil *Metrics do nothing.
type Metrics struct {
	refreshes   *prom.Vec[prom.Counter]
	fetches     *prom.Counter
	fetchErrors *prom.Counter
	busMessages *prom.Vec[prom.Counter]
	version     *prom.Gauge
	revision    *prom.Gauge
	items       *prom.Gauge
	updated     *prom.Gauge
	requests    *prom.Vec[prom.Counter]
	serveOnce   sync.Once
	byCode      [len(responseCodes)]*prom.Counter // requests' series, made by serving
}

// responseCodes are the status codes the handler writes: the values of
// yolk_http_requests_total's code label.
var responseCodes = [...]int{
	http.StatusOK,
	http.StatusNotFound,
	http.StatusMethodNotAllowed,
	http.StatusServiceUnavailable,
}

// NewMetrics returns the cache's metrics, registered in reg. It panics if
// reg already has them.
func NewMetrics(reg *prom.Registry) *Metrics {
	return &Metrics{
		refreshes: reg.CounterVec("yolk_cache_refreshes_total", "Snapshots installed, by what caused them.", "by"),
		fetches:   reg.Counter("yolk_remote_fetches_total", "Requests to the remote source, answered or not."),
		fetchErrors: reg.Counter("yolk_remote_fetch_errors_total",
			"Requests to the remote source that failed or returned something malformed (the last good snapshot stays)."),
		busMessages: reg.CounterVec("yolk_bus_messages_total", "Messages received on the bus, by event.", "event"),
		version:     reg.Gauge("yolk_cache_version", "The cached version if it is a number, else 0."),
		revision: reg.Gauge("yolk_cache_revision",
			"The cached snapshot's revision: its place in the service's one order of snapshots."),
		items:    reg.Gauge("yolk_cache_items", "Items in the cached snapshot."),
		updated:  reg.Gauge("yolk_cache_updated_timestamp_seconds", "When the cached snapshot was installed, in seconds since the epoch."),
		requests: reg.CounterVec("yolk_http_requests_total", "Responses of the data API, by status code.", "code"),
	}
}

// Refresh counts a snapshot installed because of by (start, force, pull,
// push, catchup): yolk_cache_refreshes_total{by}.
func (m *Metrics) Refresh(by string) {
	if m == nil {
		return
	}
	m.refreshes.With(by).Inc()
}

// Fetch counts a request to the remote source (yolk_remote_fetches_total)
// and, if err is neither nil nor [ErrNotModified], its failure
// (yolk_remote_fetch_errors_total). A request cancelled by its caller
// (context.Canceled) is not counted.
func (m *Metrics) Fetch(err error) {
	if m == nil || errors.Is(err, context.Canceled) {
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
	m.busMessages.With(event).Inc()
}

// SetSnapshot records the snapshot now served: yolk_cache_version (the
// version if it parses as a number, else 0), yolk_cache_revision, yolk_cache_items and
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
	m.revision.Set(float64(s.Revision))
	m.items.Set(float64(len(s.Items)))
	if s.UpdatedAt.IsZero() {
		m.updated.Set(0)
	} else {
		m.updated.Set(float64(s.UpdatedAt.UnixNano()) / 1e9)
	}
}

// serving makes the series of the data API's responses, at 0, so that a
// rate over them starts with the handler rather than with its first response.
// The agent, which serves no data API, has none.
func (m *Metrics) serving() {
	if m == nil {
		return
	}
	m.serveOnce.Do(func() {
		for i, code := range responseCodes {
			m.byCode[i] = m.requests.With(strconv.Itoa(code))
		}
	})
}

// request counts a response of the handler, without allocating for the
// codes it writes.
func (m *Metrics) request(code int) {
	if m == nil {
		return
	}
	m.serving()
	for i, c := range responseCodes {
		if c == code {
			m.byCode[i].Inc()
			return
		}
	}
	m.requests.With(strconv.Itoa(code)).Inc()
}
