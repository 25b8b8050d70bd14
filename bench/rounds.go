package main

import (
	"context"
	"math"
	"slices"
)

// Rounds: every speed target is measured in rounds, each system taking its
// turn in each round, so that a slow spell of the shared machine falls on all
// of them alike; a target's verdict then rests on each side's median round
// and on the spread of its rounds (judge).

// roundSide is one system's turn in each round: run measures it once and
// keeps its figures; an error leaves the system out of the later rounds.
type roundSide struct {
	name string
	run  func(round int) error
}

// roundOrder is the order of k sides in round r (from 0): each round starts
// one side later than the one before, so that no side always goes first
// (A B, B A, A B, ... for two).
func roundOrder(r, k int) []int {
	order := make([]int, k)
	for i := range order {
		order[i] = (r + i) % k
	}
	return order
}

// runRounds runs rounds rounds of every side, in roundOrder, and returns the
// first error of each side that failed, by index (nil when none did).
func (h *harness) runRounds(ctx context.Context, what string, rounds int, sides []roundSide) []error {
	errs := make([]error, len(sides))
	for r := range rounds {
		for _, i := range roundOrder(r, len(sides)) {
			if errs[i] != nil || ctx.Err() != nil {
				continue
			}
			h.logf("%s, round %d of %d: %s", what, r+1, rounds, sides[i].name)
			errs[i] = sides[i].run(r)
		}
	}
	return errs
}

// Spread summarises one figure over rounds: its median, its interquartile
// range (Q1 to Q3, interpolated between ranks: with 5 rounds, the 2nd and the
// 4th value), and its extremes.
type Spread struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	Q1     float64 `json:"q1"`
	Q3     float64 `json:"q3"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// spreadOf summarises xs; none gives the zero Spread (N 0).
func spreadOf(xs []float64) Spread {
	if len(xs) == 0 {
		return Spread{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	q := func(p float64) float64 {
		pos := p * float64(len(s)-1)
		lo := int(math.Floor(pos))
		if lo+1 >= len(s) {
			return s[len(s)-1]
		}
		return s[lo] + (pos-float64(lo))*(s[lo+1]-s[lo])
	}
	return Spread{N: len(s), Median: median(s), Q1: q(0.25), Q3: q(0.75), Min: s[0], Max: s[len(s)-1]}
}

// ratiosOf is yolk's figure over the peer's, round by round (the rounds both
// sides completed, which are the first ones: a side that fails runs no more).
func ratiosOf(yolk, peer []float64) []float64 {
	var out []float64
	for i := range min(len(yolk), len(peer)) {
		if peer[i] != 0 {
			out = append(out, yolk[i]/peer[i])
		}
	}
	return out
}

// verdict is a target's outcome.
type verdict int

const (
	undecided    verdict = iota // a figure it needs is missing
	pass                        // met, beyond the noise
	inconclusive                // the medians meet it, the spreads do not say so
	fail                        // not met
)

// String is the verdict as the report shows it.
func (v verdict) String() string {
	switch v {
	case pass, inconclusive:
		return v.word()
	case fail:
		return "**FAIL**"
	}
	return ""
}

// verdictOf decides a target without rounds: pass or fail, or undecided
// when a figure is missing.
func verdictOf(ok bool, cells ...cell) verdict {
	for _, c := range cells {
		if !c.ok {
			return undecided
		}
	}
	if ok {
		return pass
	}
	return fail
}

// minRoundsToPass is how many rounds each side needs for a pass: with fewer,
// there is no spread to judge the noise by.
const minRoundsToPass = 3

// goal is a target on yolk's figure against a peer's: yolk ≥ factor × peer
// when higher is better (throughput), yolk ≤ factor × peer otherwise
// (latency).
type goal struct {
	factor float64
	higher bool
}

// judge decides a goal from each side's rounds:
//   - fail when the medians miss it;
//   - pass when the medians meet it and the interquartile ranges do not
//     overlap against it: with higher better, yolk's Q1 is at least factor ×
//     the peer's Q3; with lower better, yolk's Q3 is at most factor × the
//     peer's Q1;
//   - inconclusive when the medians meet it but the ranges overlap, or when a
//     side has fewer than minRoundsToPass rounds;
//   - undecided when a side has no rounds.
func judge(g goal, yolk, peer Spread) verdict {
	if yolk.N == 0 || peer.N == 0 || !finite(yolk.Median) || !finite(peer.Median) {
		return undecided
	}
	var medians, apart bool
	if g.higher {
		medians = yolk.Median >= g.factor*peer.Median
		apart = yolk.Q1 >= g.factor*peer.Q3
	} else {
		medians = yolk.Median <= g.factor*peer.Median
		apart = yolk.Q3 <= g.factor*peer.Q1
	}
	switch {
	case !medians:
		return fail
	case apart && yolk.N >= minRoundsToPass && peer.N >= minRoundsToPass:
		return pass
	}
	return inconclusive
}
