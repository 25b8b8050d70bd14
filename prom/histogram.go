package prom

import (
	"math"
	"sort"
	"sync/atomic"
)

// A Histogram counts observations in buckets by upper bound, as Prometheus
// reads them: name_bucket{le="bound"} counts the observations up to bound
// (cumulative, with le="+Inf" counting them all), name_sum adds them and
// name_count counts them. It is safe for concurrent use.
type Histogram struct {
	bounds []float64       // sorted, without +Inf
	counts []atomic.Uint64 // per bucket, not cumulative; the last is +Inf's
	sum    atomic.Uint64   // float64 bits
}

func newHistogram(bounds []float64) *Histogram {
	return &Histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

// Observe counts v in the first bucket whose bound is v or more.
func (h *Histogram) Observe(v float64) {
	h.counts[sort.SearchFloat64s(h.bounds, v)].Add(1)
	addFloat(&h.sum, v)
}

// write writes the histogram's series. Its count is the sum of its buckets,
// read once, so that name_count and le="+Inf" agree during observations.
func (h *Histogram) write(w *writer, name string, labels, values []string) {
	var total uint64
	for i := range h.counts {
		total += h.counts[i].Load()
		le := "+Inf"
		if i < len(h.bounds) {
			le = FormatValue(h.bounds[i])
		}
		w.sample(name, "_bucket", labels, values, "le", le, float64(total))
	}
	w.sample(name, "_sum", labels, values, "", "", math.Float64frombits(h.sum.Load()))
	w.sample(name, "_count", labels, values, "", "", float64(total))
}
