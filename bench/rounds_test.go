package main

import (
	"reflect"
	"testing"
)

func TestJudge(t *testing.T) {
	sp := func(n int, q1, med, q3 float64) Spread { return Spread{N: n, Q1: q1, Median: med, Q3: q3} }
	more := func(f float64) goal { return goal{factor: f, higher: true} }
	less := func(f float64) goal { return goal{factor: f} }
	tests := []struct {
		name       string
		g          goal
		yolk, peer Spread
		want       verdict
	}{
		// yolk ≥ 1.2 × peer, throughput.
		{"apart: yolk's Q1 clears 1.2 × the peer's Q3", more(1.2), sp(5, 95, 100, 105), sp(5, 48, 50, 52), pass},
		{"medians meet it, IQRs overlap", more(1.2), sp(5, 60, 100, 105), sp(5, 48, 50, 52), inconclusive},
		{"medians miss it, though yolk's Q3 is above", more(1.2), sp(5, 50, 55, 70), sp(5, 48, 50, 52), fail},
		{"exactly at the target, on both counts", more(1.2), sp(5, 60, 60, 70), sp(5, 48, 50, 50), pass},
		{"a factor below 1 (0.8 × raw NATS): apart", more(0.8), sp(5, 850, 900, 950), sp(5, 1000, 1050, 1060), pass},
		{"a factor below 1: the peer's Q3 decides, not its median", more(0.8), sp(5, 845, 900, 950), sp(5, 1000, 1050, 1060), inconclusive},
		// yolk ≤ 1.15 × peer, latency: lower is better.
		{"latency apart: yolk's Q3 under 1.15 × the peer's Q1", less(1.15), sp(5, 0.09, 0.1, 0.11), sp(5, 0.098, 0.1, 0.11), pass},
		{"latency: yolk's Q1 is low but its Q3 overlaps", less(1.15), sp(5, 0.05, 0.1, 0.12), sp(5, 0.098, 0.1, 0.11), inconclusive},
		{"latency: medians miss it", less(1.15), sp(5, 0.09, 0.12, 0.13), sp(5, 0.098, 0.1, 0.11), fail},
		{"latency: a better spread does not save failed medians", less(1), sp(5, 0.01, 0.101, 0.102), sp(5, 0.1, 0.1, 0.2), fail},
		{"latency, ½ of the peer's", less(0.5), sp(5, 1.8, 2, 2.2), sp(5, 4.8, 5, 5.5), pass},
		// Too few rounds to judge the noise by, or none.
		{"apart but 2 rounds", more(1.2), sp(2, 95, 100, 105), sp(5, 48, 50, 52), inconclusive},
		{"apart but the peer has 1 round", more(1.2), sp(5, 95, 100, 105), sp(1, 50, 50, 50), inconclusive},
		{"1 round that misses it still fails", more(1.2), sp(1, 55, 55, 55), sp(1, 50, 50, 50), fail},
		{"no yolk rounds", more(1.2), Spread{}, sp(5, 48, 50, 52), undecided},
		{"no peer rounds", less(1), sp(5, 1, 1, 1), Spread{}, undecided},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := judge(tt.g, tt.yolk, tt.peer); got != tt.want {
				t.Errorf("judge(%+v, %+v, %+v) = %v, want %v", tt.g, tt.yolk, tt.peer, got.word(), tt.want.word())
			}
		})
	}
}

func TestSpreadOf(t *testing.T) {
	tests := []struct {
		in   []float64
		want Spread
	}{
		{nil, Spread{}},
		{[]float64{7}, Spread{N: 1, Median: 7, Q1: 7, Q3: 7, Min: 7, Max: 7}},
		{[]float64{5, 1, 4, 2, 3}, Spread{N: 5, Median: 3, Q1: 2, Q3: 4, Min: 1, Max: 5}}, // 5 rounds: the 2nd and the 4th
		{[]float64{4, 1, 3, 2}, Spread{N: 4, Median: 2.5, Q1: 1.75, Q3: 3.25, Min: 1, Max: 4}},
		{[]float64{3, 1, 2}, Spread{N: 3, Median: 2, Q1: 1.5, Q3: 2.5, Min: 1, Max: 3}},
	}
	for _, tt := range tests {
		if got := spreadOf(tt.in); got != tt.want {
			t.Errorf("spreadOf(%v) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestRatiosOf(t *testing.T) {
	got := ratiosOf([]float64{2, 3, 8}, []float64{1, 0, 4, 5})
	if want := []float64{2, 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("ratiosOf = %v, want %v (round by round, the rounds both have, none over 0)", got, want)
	}
}

func TestRoundOrder(t *testing.T) {
	tests := []struct {
		r, k int
		want []int
	}{
		{0, 2, []int{0, 1}},
		{1, 2, []int{1, 0}},
		{2, 2, []int{0, 1}},
		{0, 3, []int{0, 1, 2}},
		{2, 3, []int{2, 0, 1}},
		{3, 4, []int{3, 0, 1, 2}},
	}
	for _, tt := range tests {
		if got := roundOrder(tt.r, tt.k); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("roundOrder(%d, %d) = %v, want %v", tt.r, tt.k, got, tt.want)
		}
	}
}
