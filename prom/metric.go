package prom

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// A Counter is a value that only goes up, from 0. It is safe for concurrent use.
type Counter struct{ bits atomic.Uint64 }

// Inc adds 1.
func (c *Counter) Inc() { c.Add(1) }

// Add adds v. It panics if v is negative: a counter does not go down.
func (c *Counter) Add(v float64) {
	if v < 0 {
		panic("prom: a counter cannot go down")
	}
	addFloat(&c.bits, v)
}

// Value returns the count.
func (c *Counter) Value() float64 { return math.Float64frombits(c.bits.Load()) }

// A Gauge is a value that goes up and down. It is safe for concurrent use.
type Gauge struct{ bits atomic.Uint64 }

// Set sets the gauge to v.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Add adds v, which may be negative.
func (g *Gauge) Add(v float64) { addFloat(&g.bits, v) }

// Value returns the gauge's value.
func (g *Gauge) Value() float64 { return math.Float64frombits(g.bits.Load()) }

// addFloat adds v to the float64 whose bits are in bits.
func addFloat(bits *atomic.Uint64, v float64) {
	for {
		old := bits.Load()
		if bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// A Vec is a family of metrics of type M (a [Counter], [Gauge] or
// [Histogram]), one per combination of the values of its labels. A series
// appears in the exposition once With has made it, and stays. It is safe
// for concurrent use.
type Vec[M any] struct {
	labels []string
	newM   func() *M
	mu     sync.Mutex
	series map[string]*series[M]
}

type series[M any] struct {
	values []string
	m      *M
}

func newVec[M any](labels []string, newM func() *M) *Vec[M] {
	return &Vec[M]{labels: slices.Clone(labels), newM: newM, series: make(map[string]*series[M])}
}

// With returns the metric of the label values values, in the order of the
// family's labels, and makes it the first time. It panics if the number of
// values is not the number of labels, or if a value is not valid UTF-8,
// which Prometheus would refuse. Keep the *M of a series used on a hot path
// rather than calling With each time: With takes a lock.
func (v *Vec[M]) With(values ...string) *M {
	if len(values) != len(v.labels) {
		panic(fmt.Sprintf("prom: %d label values for the labels %v", len(values), v.labels))
	}
	checkValues(v.labels, values)
	// The byte 0xff never appears in valid UTF-8: two different lists of
	// values never make the same key.
	key := strings.Join(values, "\xff")
	v.mu.Lock()
	defer v.mu.Unlock()
	s, ok := v.series[key]
	if !ok {
		s = &series[M]{values: slices.Clone(values), m: v.newM()}
		v.series[key] = s
	}
	return s.m
}

// checkValues panics if one of values, the values of labels, is not valid UTF-8.
func checkValues(labels, values []string) {
	for i, v := range values {
		if !utf8.ValidString(v) {
			panic(fmt.Sprintf("prom: the value %q of the label %s is not valid UTF-8", v, labels[i]))
		}
	}
}

// each calls f for every series, sorted by label values.
func (v *Vec[M]) each(f func(values []string, m *M)) {
	v.mu.Lock()
	all := make([]*series[M], 0, len(v.series))
	for _, s := range v.series {
		all = append(all, s)
	}
	v.mu.Unlock()
	slices.SortFunc(all, func(a, b *series[M]) int { return slices.Compare(a.values, b.values) })
	for _, s := range all {
		f(s.values, s.m)
	}
}
