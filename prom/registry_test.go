package prom

import (
	"io"
	"math"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRegistryWriteTo(t *testing.T) {
	reg := NewRegistry()
	reg.Counter("a_total", "As.").Add(2.5)
	g := reg.GaugeVec("b", "Bs, by kind and path.", "kind", "path")
	g.With("y", `x"y\z`+"\n").Set(-1)
	g.With("x", "/").Set(1e21)
	reg.CounterVec("empty_total", "Never made: not written.", "code")
	h := reg.Histogram("c_seconds", "Cs\\ in\nseconds.", []float64{0.1, 1, math.Inf(1)}) // +Inf is written once
	for _, v := range []float64{0.05, 0.1, 0.5, 7} {
		h.Observe(v)
	}
	reg.Collect("d", "Ds, given at the scrape.", KindGauge, []string{"role"}, func(emit func(float64, ...string)) {
		emit(3, "agent")
	})
	var b strings.Builder
	if _, err := reg.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	want := `# HELP a_total As.
# TYPE a_total counter
a_total 2.5
# HELP b Bs, by kind and path.
# TYPE b gauge
b{kind="x",path="/"} 1e+21
b{kind="y",path="x\"y\\z\n"} -1
# HELP c_seconds Cs\\ in\nseconds.
# TYPE c_seconds histogram
c_seconds_bucket{le="0.1"} 2
c_seconds_bucket{le="1"} 3
c_seconds_bucket{le="+Inf"} 4
c_seconds_sum 7.65
c_seconds_count 4
# HELP d Ds, given at the scrape.
# TYPE d gauge
d{role="agent"} 3
`
	if got := b.String(); got != want {
		t.Errorf("WriteTo wrote\n%s\nwant\n%s", got, want)
	}
}

func TestRegistryPanics(t *testing.T) {
	for _, tc := range []struct {
		name     string
		register func(*Registry)
	}{
		{"a name twice", func(r *Registry) { r.Counter("x_total", ""); r.Gauge("x_total", "") }},
		{"a histogram's series name", func(r *Registry) { r.Histogram("h", "", nil); r.Gauge("h_count", "") }},
		{"an invalid metric name", func(r *Registry) { r.Gauge("1x", "") }},
		{"an invalid label name", func(r *Registry) { r.GaugeVec("x", "", "a-b") }},
		{"a reserved label name", func(r *Registry) { r.GaugeVec("x", "", "__name") }},
		{"a label twice", func(r *Registry) { r.GaugeVec("x", "", "a", "a") }},
		{"le on a histogram", func(r *Registry) { r.HistogramVec("x", "", []float64{1}, "le") }},
		{"unsorted buckets", func(r *Registry) { r.Histogram("x", "", []float64{2, 1}) }},
		{"a bucket twice", func(r *Registry) { r.Histogram("x", "", []float64{1, 1}) }},
		{"a NaN bucket", func(r *Registry) { r.Histogram("x", "", []float64{math.NaN(), 1}) }},
		{"+Inf before the last bucket", func(r *Registry) { r.Histogram("x", "", []float64{math.Inf(1), math.Inf(1)}) }},
		{"too few label values", func(r *Registry) { r.GaugeVec("x", "", "a", "b").With("1") }},
		{"a label value not UTF-8", func(r *Registry) { r.GaugeVec("x", "", "a").With("\xff") }},
		{"a collected label value not UTF-8", func(r *Registry) {
			r.Collect("x", "", KindGauge, []string{"a"}, func(emit func(float64, ...string)) { emit(1, "a\xc3") })
			r.WriteTo(io.Discard)
		}},
		{"Collect of a histogram", func(r *Registry) { r.Collect("x", "", "histogram", nil, func(func(float64, ...string)) {}) }},
		{"a help text not UTF-8", func(r *Registry) { r.Counter("x_total", "\xff") }},
		{"a counter going down", func(r *Registry) { r.Counter("x_total", "").Add(-1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", tc.name)
				}
			}()
			tc.register(NewRegistry())
		})
	}
}

// The runtime's series have the names and types of Prometheus's Go client.
func TestRegisterRuntime(t *testing.T) {
	reg := NewRegistry()
	reg.RegisterRuntime()
	rec := httptest.NewRecorder()
	reg.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if got := rec.Header().Get("Content-Type"); got != ContentType {
		t.Errorf("Content-Type = %q, want %q", got, ContentType)
	}
	text := rec.Body.String()
	for _, want := range []string{
		"# TYPE go_gc_duration_seconds summary\n",
		"go_gc_duration_seconds{quantile=\"0.5\"} ",
		"go_gc_duration_seconds_count ",
		"# TYPE go_gc_gogc_percent gauge\n",
		"# TYPE go_goroutines gauge\n",
		"go_info{version=\"go",
		"# TYPE go_memstats_alloc_bytes_total counter\n",
		"# TYPE go_memstats_heap_inuse_bytes gauge\n",
		"# TYPE go_sched_gomaxprocs_threads gauge\n",
		"# TYPE go_threads gauge\n",
		"# TYPE process_cpu_seconds_total counter\n",
		"# TYPE process_open_fds gauge\n",
		"# TYPE process_max_fds gauge\n",
		"# TYPE process_network_receive_bytes_total counter\n",
		"# TYPE process_resident_memory_bytes gauge\n",
		"# TYPE process_start_time_seconds gauge\n",
		"# TYPE process_virtual_memory_max_bytes gauge\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the runtime's exposition lacks %q", want)
		}
	}
	if strings.Contains(text, "process_resident_memory_bytes 0\n") {
		t.Errorf("process_resident_memory_bytes is 0")
	}
	// the test process started moments ago
	_, rest, _ := strings.Cut(text, "\nprocess_start_time_seconds ")
	line, _, _ := strings.Cut(rest, "\n")
	if start, err := strconv.ParseFloat(line, 64); err != nil || math.Abs(float64(time.Now().Unix())-start) > 3600 {
		t.Errorf("process_start_time_seconds %q (%v), want within an hour of now", line, err)
	}
}

// Counters and histograms lose no update under concurrent use, and a
// histogram's count is its +Inf bucket.
func TestConcurrentUpdates(t *testing.T) {
	reg := NewRegistry()
	c := reg.Counter("n_total", "Ns.")
	h := reg.Histogram("h", "Hs.", []float64{1})
	const goroutines, each = 8, 1000
	done := make(chan struct{})
	for range goroutines {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range each {
				c.Inc()
				h.Observe(float64(i % 2))
			}
		}()
	}
	for range goroutines {
		<-done
	}
	if got := c.Value(); got != goroutines*each {
		t.Errorf("n_total = %v, want %v", got, goroutines*each)
	}
	var b strings.Builder
	reg.WriteTo(&b)
	for _, want := range []string{`h_bucket{le="+Inf"} 8000`, "h_count 8000", "h_sum 4000"} {
		if !strings.Contains(b.String(), want+"\n") {
			t.Errorf("exposition lacks %s:\n%s", want, b.String())
		}
	}
}
