package main

import (
	"math"
	"slices"
	"time"
)

// Quantiles summarise a sample of latencies, in milliseconds.
type Quantiles struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// quantilesOf computes the quantiles of xs the way baseline.js does: the
// element at floor(q*n) of the sorted sample (so figures compare like for
// like). An empty sample gives zeros with N 0.
func quantilesOf(xs []float64) Quantiles {
	if len(xs) == 0 {
		return Quantiles{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	q := func(f float64) float64 { return s[min(len(s)-1, int(math.Floor(f*float64(len(s)))))] }
	return Quantiles{N: len(s), P50: q(0.5), P90: q(0.9), P99: q(0.99), Max: s[len(s)-1]}
}

// medianQuantiles is the median of each field over repetitions (as the
// anchors' README reports the baseline), with N the total.
func medianQuantiles(qs []Quantiles) Quantiles {
	pick := func(f func(Quantiles) float64) float64 {
		xs := make([]float64, len(qs))
		for i, q := range qs {
			xs[i] = f(q)
		}
		return median(xs)
	}
	n := 0
	for _, q := range qs {
		n += q.N
	}
	return Quantiles{
		N:   n,
		P50: pick(func(q Quantiles) float64 { return q.P50 }),
		P90: pick(func(q Quantiles) float64 { return q.P90 }),
		P99: pick(func(q Quantiles) float64 { return q.P99 }),
		Max: pick(func(q Quantiles) float64 { return q.Max }),
	}
}

// median returns the median of xs (the mean of the middle two for an even
// count), or 0 for none (results must stay JSON numbers).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// ms converts a duration to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
