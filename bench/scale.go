package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// bench -scale (make bench-scale) measures how yolk's costs grow with the
// work, beside raw NATS and the egg baseline where they have the figure:
// fan-out against the number of workers, convergence and memory against the
// size of the data set, and remote fetches per change against the number of
// workers. It writes its own section of BENCHMARKS.md, between the scale
// markers, and a plot of each table as an SVG file beside it.

// scaleConfig is what a scale run measures.
type scaleConfig struct {
	fanWorkers   []int // fan-out: worker counts
	fanRounds    int   // rounds of yolk, raw NATS and the egg baseline, per worker count
	fetchWorkers []int // fetches per change: worker counts
	fetchChanges int
	sizes        []dataSize
	dataWorkers  int // workers of the convergence and memory runs
	rest         time.Duration
	total        time.Duration
}

// dataSize is one data-set size of the convergence and memory runs: the
// source's GET /data body is filled up to Bytes (10^n, as the report writes
// them), then Changes changes are timed after a few untimed ones.
type dataSize struct {
	Bytes   int
	Changes int
}

// The data set's shape: scaleKeys small keys (k0 to k<n-1>, the ones the
// changes rewrite) and as many padding values of at most padMax bytes as
// the size needs, each a JSON array of small records.
const (
	scaleKeys = 20
	padMax    = 1_000_000 // under the source's 1 MiB limit of a PUT body
	dataWarm  = 2         // untimed changes before the timed ones
)

func fullScaleConfig() scaleConfig {
	return scaleConfig{
		fanWorkers: []int{1, 2, 4, 8, 16}, fanRounds: 5,
		fetchWorkers: []int{1, 2, 4, 8}, fetchChanges: 50,
		sizes: []dataSize{
			{1_000, 50}, {100_000, 50}, {1_000_000, 30}, {10_000_000, 10}, {30_000_000, 8}, {50_000_000, 5},
		},
		dataWorkers: 4, rest: 1500 * time.Millisecond, total: 12 * time.Minute,
	}
}

func quickScaleConfig() scaleConfig {
	return scaleConfig{
		fanWorkers: []int{1, 4}, fanRounds: 1,
		fetchWorkers: []int{1, 2}, fetchChanges: 5,
		sizes:       []dataSize{{1_000, 5}, {1_000_000, 3}, {50_000_000, 1}},
		dataWorkers: 2, rest: 300 * time.Millisecond, total: 4 * time.Minute,
	}
}

// fanN is how many messages a fan-out run sends to each of w workers: about
// 200,000 deliveries, and never fewer than 25,000 messages.
func fanN(w int) int { return min(200_000, max(25_000, 200_000/w)) }

// runScale runs the scale sections and writes their report: into out's
// scale section and plots beside out when out is set, and the raw figures as
// JSON into jsonOut (default: a temporary file). interrupted is cancelled by
// a signal only; then out is left as it was.
func (h *harness) runScale(ctx, interrupted context.Context, sc scaleConfig, out, jsonOut string) error {
	res := &ScaleResults{Command: h.res.Command, Date: h.res.Date, Machine: h.res.Machine}
	eggPush := map[int]*ConvergeResult{} // the baseline's push runs, from its fan-out runs
	for _, w := range sc.fanWorkers {
		if ctx.Err() == nil {
			fo, push := h.scaleFanout(ctx, sc, w)
			res.Fanout = append(res.Fanout, fo...)
			eggPush[w] = push
		}
	}
	for _, w := range sc.fetchWorkers {
		if ctx.Err() == nil {
			if f, err := h.scaleFetches(ctx, sc, w); err != nil {
				h.fail("fetches, %d workers: %v", w, err)
			} else {
				f.Egg = eggPush[w]
				res.Fetches = append(res.Fetches, f)
			}
		}
	}
	for _, size := range sc.sizes {
		if ctx.Err() == nil {
			res.Data = append(res.Data, h.scaleData(ctx, sc, size))
		}
	}
	if ctx.Err() != nil {
		h.fail("the run was cut short: %v", context.Cause(ctx))
	}
	res.Machine.LoadAfter = loadAverage()
	res.Took = time.Since(h.start).Round(100 * time.Millisecond).String()
	res.Notes, res.Failures = h.res.Notes, h.res.Failures
	h.logf("done in %s", res.Took)

	if jsonOut == "" {
		jsonOut = filepath.Join(os.TempDir(), "yolk-bench-scale.json")
	}
	var errs []error
	if err := writeScaleJSON(jsonOut, res); err != nil {
		errs = append(errs, err)
	} else {
		fmt.Fprintf(os.Stderr, "bench: raw results in %s\n", jsonOut)
	}
	plots := scalePlots(res)
	block := renderScale(res)
	fmt.Println(block)
	if interrupted.Err() != nil && out != "" {
		h.logf("interrupted: %s is left as it was", out)
		out = ""
	}
	if out != "" {
		dir := filepath.Dir(out)
		for _, p := range plots {
			if err := p.plot.writeSVG(filepath.Join(dir, p.file)); err != nil {
				errs = append(errs, err)
			}
		}
		if err := writeScaleMarkdown(out, block); err != nil {
			errs = append(errs, err)
		} else {
			fmt.Fprintf(os.Stderr, "bench: wrote the scale section of %s and %d plots beside it\n", out, len(plots))
		}
	}
	if len(res.Failures) > 0 {
		errs = append(errs, fmt.Errorf("%d measurements failed: %s", len(res.Failures), strings.Join(res.Failures, "; ")))
	}
	return errors.Join(errs...)
}

// ScaleResults is everything one scale run measured.
type ScaleResults struct {
	Command  string         `json:"command"`
	Date     time.Time      `json:"date"`
	Machine  Machine        `json:"machine"`
	Took     string         `json:"took"`
	Fanout   []FanoutResult `json:"fanout"`
	Fetches  []FetchPoint   `json:"fetches"`
	Data     []DataPoint    `json:"data"`
	Notes    []string       `json:"notes,omitempty"`
	Failures []string       `json:"failures,omitempty"`
}

// FetchPoint is remote fetches per change, and the convergence they come
// with, for one worker count: yolk's and the egg baseline's.
type FetchPoint struct {
	Workers int             `json:"workers"`
	Yolk    ConvergeResult  `json:"yolk"`
	Egg     *ConvergeResult `json:"egg,omitempty"`
}

// DataPoint is one data-set size's convergence and memory.
type DataPoint struct {
	Target           int       `json:"target"` // bytes asked for
	Bytes            int       `json:"bytes"`  // the source's GET /data body, as loaded
	Workers          int       `json:"workers"`
	Ms               Quantiles `json:"ms"`    // change to every worker serving it
	PutMs            Quantiles `json:"putMs"` // the source's PUT alone
	FetchesPerChange float64   `json:"fetchesPerChange"`
	RestRSS          []ProcRSS `json:"restRSS,omitempty"`  // at rest after the load
	AfterRSS         []ProcRSS `json:"afterRSS,omitempty"` // at rest after the timed changes
	LoadSeconds      float64   `json:"loadSeconds"`        // master start until every worker serves the data set
	Error            string    `json:"error,omitempty"`
}

func writeScaleJSON(path string, res *ScaleResults) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
