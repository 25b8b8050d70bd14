package prom

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// A Registry holds a process's metric families and writes them in the
// Prometheus text format. The zero Registry is not ready: use [NewRegistry].
// It is safe for concurrent use.
//
// The methods that make a metric register it and panic if the name or a
// label name is not valid for Prometheus, if the help text is not valid
// UTF-8, or if the name is taken: like a duplicate case in a switch, it is a
// mistake of the program, found at start.
type Registry struct {
	mu      sync.Mutex
	names   map[string]bool
	entries []entry
}

// An entry writes one or more families at each scrape.
type entry func(w *writer)

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{names: make(map[string]bool)} }

// Kind is the type of a family, as its TYPE line says it.
type Kind string

// The kinds of family a [Registry.Collect] function may give.
const (
	KindCounter Kind = "counter"
	KindGauge   Kind = "gauge"
)

// Counter registers and returns a counter without labels. Its name should
// end in _total.
func (r *Registry) Counter(name, help string) *Counter {
	return r.CounterVec(name, help).With()
}

// CounterVec registers and returns a family of counters told apart by the
// values of labels.
func (r *Registry) CounterVec(name, help string, labels ...string) *Vec[Counter] {
	v := newVec(labels, func() *Counter { return new(Counter) })
	r.register(name, help, labels, false, func(w *writer) {
		w.family(name, help, KindCounter)
		v.each(func(values []string, c *Counter) { w.sample(name, "", labels, values, "", "", c.Value()) })
	})
	return v
}

// Gauge registers and returns a gauge without labels.
func (r *Registry) Gauge(name, help string) *Gauge {
	return r.GaugeVec(name, help).With()
}

// GaugeVec registers and returns a family of gauges told apart by the values
// of labels.
func (r *Registry) GaugeVec(name, help string, labels ...string) *Vec[Gauge] {
	v := newVec(labels, func() *Gauge { return new(Gauge) })
	r.register(name, help, labels, false, func(w *writer) {
		w.family(name, help, KindGauge)
		v.each(func(values []string, g *Gauge) { w.sample(name, "", labels, values, "", "", g.Value()) })
	})
	return v
}

// Histogram registers and returns a histogram without labels, with the
// upper bounds buckets: increasing, not NaN. A last +Inf is dropped: every
// histogram has it, written once.
func (r *Registry) Histogram(name, help string, buckets []float64) *Histogram {
	return r.HistogramVec(name, help, buckets).With()
}

// HistogramVec registers and returns a family of histograms told apart by
// the values of labels, each with the upper bounds buckets (see
// [Registry.Histogram]). A label may not be named le.
func (r *Registry) HistogramVec(name, help string, buckets []float64, labels ...string) *Vec[Histogram] {
	bounds := slices.Clone(buckets)
	if n := len(bounds); n > 0 && math.IsInf(bounds[n-1], 1) {
		bounds = bounds[:n-1]
	}
	for i, b := range bounds {
		if math.IsNaN(b) || math.IsInf(b, 1) || i > 0 && b <= bounds[i-1] {
			panic(fmt.Sprintf("prom: histogram %s: buckets %v not increasing, or +Inf before the last", name, buckets))
		}
	}
	if slices.Contains(labels, "le") {
		panic(fmt.Sprintf("prom: histogram %s: a label named le", name))
	}
	v := newVec(labels, func() *Histogram { return newHistogram(bounds) })
	r.register(name, help, labels, true, func(w *writer) {
		w.family(name, help, "histogram")
		v.each(func(values []string, h *Histogram) { h.write(w, name, labels, values) })
	})
	return v
}

// Collect registers a family of kind [KindCounter] or [KindGauge] whose
// samples f gives at each scrape, by calling emit once per series with its
// value and the values of labels, in order: for what is known elsewhere,
// such as counts kept by another component. Collect panics on another kind;
// emit panics if it is given another number of values than of labels, or a
// value that is not valid UTF-8. f is called with no lock of the registry
// held; it may be called concurrently with itself.
func (r *Registry) Collect(name, help string, kind Kind, labels []string, f func(emit func(value float64, labelValues ...string))) {
	if kind != KindCounter && kind != KindGauge {
		panic(fmt.Sprintf("prom: %s: Collect of the kind %q", name, kind))
	}
	r.register(name, help, labels, false, func(w *writer) {
		w.family(name, help, kind)
		f(func(value float64, labelValues ...string) {
			if len(labelValues) != len(labels) {
				panic(fmt.Sprintf("prom: %s: %d label values for %d labels", name, len(labelValues), len(labels)))
			}
			checkValues(labels, labelValues)
			w.sample(name, "", labels, labelValues, "", "", value)
		})
	})
}

// register adds the entry write for the family name with help and labels.
// A histogram's name also takes its series' names (_bucket, _sum, _count).
func (r *Registry) register(name, help string, labels []string, histogram bool, write entry) {
	if !utf8.ValidString(help) {
		panic(fmt.Sprintf("prom: %s: the help text is not valid UTF-8", name))
	}
	names := []string{name}
	if histogram {
		names = append(names, name+"_bucket", name+"_sum", name+"_count")
	}
	r.add(names, labels, write)
}

// add adds write, which writes the families of names, each with labels.
func (r *Registry) add(names, labels []string, write entry) {
	for _, l := range labels {
		if !validLabelName(l) || strings.HasPrefix(l, "__") {
			panic(fmt.Sprintf("prom: %s: invalid label name %q", names[0], l))
		}
	}
	if len(labels) != len(slices.Compact(slices.Sorted(slices.Values(labels)))) {
		panic(fmt.Sprintf("prom: %s: a label name repeats", names[0]))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range names {
		if !validMetricName(n) {
			panic(fmt.Sprintf("prom: invalid metric name %q", n))
		}
		if r.names[n] {
			panic(fmt.Sprintf("prom: %s is registered twice", n))
		}
	}
	for _, n := range names {
		r.names[n] = true
	}
	r.entries = append(r.entries, write)
}

// WriteTo writes every family that has a series to w in the Prometheus text
// format (version 0.0.4), in the order they were registered.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	entries := slices.Clone(r.entries)
	r.mu.Unlock()
	var tw writer
	for _, e := range entries {
		e(&tw)
	}
	tw.end()
	return tw.buf.WriteTo(w)
}

// ServeHTTP serves the registry's exposition: a process's own GET /metrics.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var b bytes.Buffer
	r.WriteTo(&b)
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b.Bytes()) // an error means the client went away
}

// ContentType is the media type of the Prometheus text format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// writer writes an exposition. A family's HELP and TYPE lines are taken back
// if no sample follows them: a family without a series is not written.
type writer struct {
	buf     bytes.Buffer
	header  int // where the open family's header starts in buf, or -1
	samples bool
}

// family starts the family name.
func (w *writer) family(name, help string, kind Kind) {
	w.end()
	w.header, w.samples = w.buf.Len(), false
	w.buf.WriteString("# HELP ")
	w.buf.WriteString(name)
	w.buf.WriteByte(' ')
	w.buf.WriteString(EscapeHelp(help))
	w.buf.WriteString("\n# TYPE ")
	w.buf.WriteString(name)
	w.buf.WriteByte(' ')
	w.buf.WriteString(string(kind))
	w.buf.WriteByte('\n')
}

// end closes the open family, taking its header back if it had no sample.
func (w *writer) end() {
	if !w.samples && w.buf.Len() > w.header {
		w.buf.Truncate(w.header)
	}
	w.header, w.samples = w.buf.Len(), true
}

// sample writes one line: name+suffix{labels="values",extra="extraValue"} v.
// extra is "" or le (a histogram's bucket) or quantile.
func (w *writer) sample(name, suffix string, labels, values []string, extra, extraValue string, v float64) {
	w.samples = true
	w.buf.WriteString(name)
	w.buf.WriteString(suffix)
	if len(labels) > 0 || extra != "" {
		w.buf.WriteByte('{')
		for i, l := range labels {
			if i > 0 {
				w.buf.WriteByte(',')
			}
			writeLabel(&w.buf, l, values[i])
		}
		if extra != "" {
			if len(labels) > 0 {
				w.buf.WriteByte(',')
			}
			writeLabel(&w.buf, extra, extraValue)
		}
		w.buf.WriteByte('}')
	}
	w.buf.WriteByte(' ')
	w.buf.WriteString(FormatValue(v))
	w.buf.WriteByte('\n')
}

func writeLabel(b *bytes.Buffer, name, value string) {
	b.WriteString(name)
	b.WriteString(`="`)
	b.WriteString(EscapeLabelValue(value))
	b.WriteByte('"')
}

// FormatValue formats v as the text format writes a value: the shortest decimal or
// exponent form, +Inf, -Inf or NaN.
func FormatValue(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// EscapeHelp escapes the text of a HELP line: a backslash and a line feed.
func EscapeHelp(s string) string { return helpEscaper.Replace(s) }

// EscapeLabelValue escapes a label value: a backslash, a line feed and a
// double quote.
func EscapeLabelValue(s string) string { return labelEscaper.Replace(s) }

// validMetricName reports whether s matches [a-zA-Z_:][a-zA-Z0-9_:]*.
func validMetricName(s string) bool {
	for i, c := range []byte(s) {
		if !(c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

// validLabelName reports whether s matches [a-zA-Z_][a-zA-Z0-9_]*.
func validLabelName(s string) bool { return validMetricName(s) && !strings.Contains(s, ":") }
