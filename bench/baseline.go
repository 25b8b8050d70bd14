package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// baselineArgs are baseline.js's arguments: workers, fan-out messages, round
// trips, pushes, repetitions.
type baselineArgs struct {
	Workers, FanN, RTTN, PushN, Reps int
}

func (a baselineArgs) list() []string {
	return []string{strconv.Itoa(a.Workers), strconv.Itoa(a.FanN), strconv.Itoa(a.RTTN), strconv.Itoa(a.PushN), strconv.Itoa(a.Reps)}
}

// baselineLine is one JSON line baseline.js prints.
type baselineLine struct {
	Baseline            string   `json:"baseline"`
	Workers             int      `json:"workers"`
	Test                string   `json:"test"` // fanout, rtt, push
	N                   int      `json:"n"`
	Size                int      `json:"size"`
	TotalMsgsPerSec     float64  `json:"totalMsgsPerSec"`
	PerWorkerMsgsPerSec float64  `json:"perWorkerMsgsPerSec"`
	P50                 float64  `json:"p50"`
	P90                 float64  `json:"p90"`
	P99                 float64  `json:"p99"`
	Max                 float64  `json:"max"`
	FetchesPerChange    *float64 `json:"fetchesPerChange"`
}

// baselineResults are baseline.js's figures, as the harness reports them.
type baselineResults struct {
	Fanout   []FanoutResult
	RTT      []RTTResult
	Converge []ConvergeResult
}

// parseBaseline reads baseline.js's output: JSON lines of its tests (other
// lines are ignored), the median over repetitions of each figure. The first
// warm repetitions of the fan-out and of the round trip are left out: they
// warm the processes up.
func parseBaseline(out string, warm int) (baselineResults, error) {
	var lines []baselineLine
	for _, s := range strings.Split(out, "\n") {
		s = strings.TrimSpace(s)
		if !strings.HasPrefix(s, "{") {
			continue
		}
		var l baselineLine
		if err := json.Unmarshal([]byte(s), &l); err != nil {
			return baselineResults{}, fmt.Errorf("baseline line %q: %w", s, err)
		}
		if l.Baseline != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return baselineResults{}, fmt.Errorf("no result lines in the baseline's output:\n%s", indent(out))
	}
	var res baselineResults
	var fanTotal, fanPer []float64
	var rtts, pushes []Quantiles
	var fetches []float64
	workers, fanN, size := 0, 0, 0
	seen := map[string]int{}
	for _, l := range lines {
		workers = l.Workers
		q := Quantiles{N: l.N, P50: l.P50, P90: l.P90, P99: l.P99, Max: l.Max}
		seen[l.Test]++
		switch l.Test {
		case "fanout":
			if seen[l.Test] <= warm {
				continue
			}
			fanTotal = append(fanTotal, l.TotalMsgsPerSec)
			fanPer = append(fanPer, l.PerWorkerMsgsPerSec)
			fanN, size = l.N, l.Size
		case "rtt":
			if l.N > 0 && seen[l.Test] > warm {
				rtts = append(rtts, q)
			}
		case "push":
			if l.N > 0 {
				pushes = append(pushes, q)
				if l.FetchesPerChange != nil {
					fetches = append(fetches, *l.FetchesPerChange)
				}
			}
		}
	}
	if len(fanTotal) > 0 {
		res.Fanout = append(res.Fanout, FanoutResult{System: sysEgg, Workers: workers, Size: size, N: fanN, Reps: len(fanTotal),
			TotalMsgsPerSec: median(fanTotal), PerWorkerMsgsPerSec: median(fanPer)})
	}
	if len(rtts) > 0 {
		res.RTT = append(res.RTT, RTTResult{System: sysEgg, Variant: "sendToAgent+sendTo(pid)", Workers: workers, Reps: len(rtts), Ms: medianQuantiles(rtts)})
	}
	if len(pushes) > 0 {
		res.Converge = append(res.Converge, ConvergeResult{System: sysEgg, Workers: workers, Ms: medianQuantiles(pushes), FetchesPerChange: median(fetches)})
	}
	return res, nil
}

// records are the baseline's fan-out and round trip as one round's records,
// for aggregate.
func (b baselineResults) records() []record {
	var recs []record
	for _, f := range b.Fanout {
		recs = append(recs, record{Test: "fanout", Size: f.Size, N: f.N, TotalMsgsPerSec: f.TotalMsgsPerSec, PerWorkerMsgsPerSec: f.PerWorkerMsgsPerSec})
	}
	for _, r := range b.RTT {
		recs = append(recs, record{Test: "rtt", Variant: r.Variant, N: r.Ms.N, RTT: &r.Ms})
	}
	return recs
}

// runBaseline runs baseline.js with args and returns its figures, leaving out
// the first warm repetitions of the fan-out and the round trip.
func (h *harness) runBaseline(ctx context.Context, args baselineArgs, warm int) (baselineResults, error) {
	script := filepath.Join(h.anchors, "egg-ipc", "baseline.js")
	p, err := startProc("baseline.js", h.node, append([]string{script}, args.list()...), baseEnv())
	if err != nil {
		return baselineResults{}, err
	}
	defer p.stop(2 * time.Second)
	timeout := 4 * time.Minute
	if h.cfg.quick {
		timeout = time.Minute
	}
	select {
	case <-p.done:
	case <-time.After(timeout):
		return baselineResults{}, fmt.Errorf("baseline.js %v: not done within %v; its output:\n%s", args.list(), timeout, indent(p.out.tail(20)))
	case <-ctx.Done():
		return baselineResults{}, ctx.Err()
	}
	out := p.out.tail(maxLines)
	if !p.cmd.ProcessState.Success() {
		return baselineResults{}, fmt.Errorf("baseline.js %v: %v; its output:\n%s", args.list(), p.cmd.ProcessState, indent(out))
	}
	return parseBaseline(out, warm)
}
