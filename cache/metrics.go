package cache

import (
	"bytes"
	"errors"
	"math"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Metrics are a worker's metrics, served in the Prometheus text exposition
// format and labelled with the worker's id. They are plain atomic counters and
// gauges written by hand, not the Prometheus client library: that library
// and the protobuf code it pulls in cost every process several milliseconds
// of package initialisation at start and a megabyte or two of memory, for
// eleven series. Nothing is global: two Metrics in one process do not
// collide. Metrics are safe for concurrent use, and the methods of a nil
// *Metrics do nothing.
type Metrics struct {
	worker      string // the value of the worker label, quoted for the exposition
	refreshes   labelled
	fetches     atomic.Uint64
	fetchErrors atomic.Uint64
	busMessages labelled
	version     gauge
	revision    gauge
	items       gauge
	updated     gauge
	requests    [len(responseCodes)]atomic.Uint64
	started     float64 // process start, seconds since the epoch
}

// responseCodes are the status codes the handler writes: the values of
// yolk_http_requests_total's code label.
var responseCodes = [...]int{
	http.StatusOK,
	http.StatusNotFound,
	http.StatusMethodNotAllowed,
	http.StatusServiceUnavailable,
}

// processStart is when this process began, near enough: package initialisation.
var processStart = time.Now()

// NewMetrics returns the metrics of the worker workerID, which is the value
// of their constant label worker.
func NewMetrics(workerID string) *Metrics {
	return &Metrics{
		worker:  strconv.Quote(workerID),
		started: float64(processStart.UnixNano()) / 1e9,
	}
}

// Refresh counts a snapshot installed because of by (start, force, pull,
// push, catchup): yolk_cache_refreshes_total{by}.
func (m *Metrics) Refresh(by string) {
	if m == nil {
		return
	}
	m.refreshes.inc(by)
}

// Fetch counts a request to the remote source (yolk_remote_fetches_total)
// and, if err is neither nil nor [ErrNotModified], its failure
// (yolk_remote_fetch_errors_total).
func (m *Metrics) Fetch(err error) {
	if m == nil {
		return
	}
	m.fetches.Add(1)
	if err != nil && !errors.Is(err, ErrNotModified) {
		m.fetchErrors.Add(1)
	}
}

// BusMessage counts a message received on the bus: yolk_bus_messages_total{event}.
// Events are the application's fixed set, so the label stays bounded.
func (m *Metrics) BusMessage(event string) {
	if m == nil {
		return
	}
	m.busMessages.inc(event)
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
	m.version.set(v)
	m.revision.set(float64(s.Revision))
	m.items.set(float64(len(s.Items)))
	if s.UpdatedAt.IsZero() {
		m.updated.set(0)
	} else {
		m.updated.set(float64(s.UpdatedAt.UnixNano()) / 1e9)
	}
}

// request counts a response of the handler.
func (m *Metrics) request(code int) {
	if m == nil {
		return
	}
	for i, c := range responseCodes {
		if c == code {
			m.requests[i].Add(1)
			return
		}
	}
}

// Handler serves the metrics in the Prometheus text exposition format
// (GET /metrics): the worker's series, then a few of the Go runtime and the
// process, under the names Prometheus's own collectors give them.
func (m *Metrics) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.Write(m.appendText(nil)) // an error means the client went away
	})
}

func (m *Metrics) appendText(b []byte) []byte {
	e := exposition{b: b, worker: m.worker}
	e.family("yolk_bus_messages_total", "counter", "Messages received on the bus, by event.")
	m.busMessages.each(func(event string, n uint64) { e.sample("event", event, float64(n)) })
	e.family("yolk_cache_items", "gauge", "Items in the cached snapshot.")
	e.sample("", "", m.items.get())
	e.family("yolk_cache_refreshes_total", "counter", "Snapshots installed, by what caused them.")
	m.refreshes.each(func(by string, n uint64) { e.sample("by", by, float64(n)) })
	e.family("yolk_cache_revision", "gauge", "The cached snapshot's revision: its place in the service's one order of snapshots.")
	e.sample("", "", m.revision.get())
	e.family("yolk_cache_updated_timestamp_seconds", "gauge", "When the cached snapshot was installed, in seconds since the epoch.")
	e.sample("", "", m.updated.get())
	e.family("yolk_cache_version", "gauge", "The cached version if it is a number, else 0.")
	e.sample("", "", m.version.get())
	e.family("yolk_http_requests_total", "counter", "Responses of the data API, by status code.")
	for i, code := range responseCodes {
		e.sample("code", strconv.Itoa(code), float64(m.requests[i].Load()))
	}
	e.family("yolk_remote_fetch_errors_total", "counter", "Requests to the remote source that failed or returned something malformed (the last good snapshot stays).")
	e.sample("", "", float64(m.fetchErrors.Load()))
	e.family("yolk_remote_fetches_total", "counter", "Requests to the remote source, answered or not.")
	e.sample("", "", float64(m.fetches.Load()))

	// The runtime and the process, without the worker label, as Prometheus's
	// Go and process collectors name them.
	e.worker = ""
	rt := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/gc/cycles/total:gc-cycles"},
	}
	metrics.Read(rt)
	e.family("go_goroutines", "gauge", "Number of goroutines that currently exist.")
	e.sample("", "", float64(runtime.NumGoroutine()))
	e.family("go_memstats_heap_alloc_bytes", "gauge", "Number of heap bytes allocated and still in use.")
	e.sample("", "", sampleValue(rt[0]))
	e.family("go_memstats_sys_bytes", "gauge", "Number of bytes obtained from system.")
	e.sample("", "", sampleValue(rt[1]))
	e.family("go_gc_cycles_total", "counter", "Completed GC cycles.")
	e.sample("", "", sampleValue(rt[2]))
	if rss, ok := residentBytes(); ok {
		e.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.")
		e.sample("", "", rss)
	}
	e.family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.")
	e.sample("", "", m.started)
	return e.b
}

func sampleValue(s metrics.Sample) float64 {
	switch s.Value.Kind() {
	case metrics.KindUint64:
		return float64(s.Value.Uint64())
	case metrics.KindFloat64:
		return s.Value.Float64()
	}
	return 0
}

// residentBytes reads this process's resident set size from /proc/self/statm.
func residentBytes() (float64, bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseUint(string(f[1]), 10, 64)
	if err != nil {
		return 0, false
	}
	return float64(pages) * float64(os.Getpagesize()), true
}

// exposition appends metric families in the Prometheus text format.
type exposition struct {
	b      []byte
	name   string
	worker string // quoted; "" for no worker label
}

func (e *exposition) family(name, typ, help string) {
	e.name = name
	e.b = append(e.b, "# HELP "+name+" "+help+"\n# TYPE "+name+" "+typ+"\n"...)
}

// sample appends one sample of the current family, with the label key=value
// (none if key is "") and the worker label, in that order (sorted, as keys
// other than "worker" sort before it).
func (e *exposition) sample(key, value string, v float64) {
	e.b = append(e.b, e.name...)
	if key != "" || e.worker != "" {
		e.b = append(e.b, '{')
		if key != "" {
			e.b = append(e.b, key+"="...)
			e.b = strconv.AppendQuote(e.b, value)
			if e.worker != "" {
				e.b = append(e.b, ',')
			}
		}
		if e.worker != "" {
			e.b = append(e.b, "worker="+e.worker...)
		}
		e.b = append(e.b, '}')
	}
	e.b = append(e.b, ' ')
	e.b = strconv.AppendFloat(e.b, v, 'g', -1, 64)
	e.b = append(e.b, '\n')
}

// labelled is a counter with one label whose values are few and fixed by the
// program (events, causes).
type labelled struct {
	mu sync.Mutex
	n  map[string]uint64
}

func (l *labelled) inc(value string) {
	l.mu.Lock()
	if l.n == nil {
		l.n = make(map[string]uint64)
	}
	l.n[value]++
	l.mu.Unlock()
}

// each calls f for every label value, in order.
func (l *labelled) each(f func(value string, n uint64)) {
	l.mu.Lock()
	keys := make([]string, 0, len(l.n))
	for k := range l.n {
		keys = append(keys, k)
	}
	counts := make([]uint64, len(keys))
	slices.Sort(keys)
	for i, k := range keys {
		counts[i] = l.n[k]
	}
	l.mu.Unlock()
	for i, k := range keys {
		f(k, counts[i])
	}
}

// gauge is a float64 that is set and read atomically.
type gauge struct{ bits atomic.Uint64 }

func (g *gauge) set(v float64) { g.bits.Store(math.Float64bits(v)) }
func (g *gauge) get() float64  { return math.Float64frombits(g.bits.Load()) }
