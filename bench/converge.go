package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// convergeWarm is how many changes go untimed before the measured ones.
const convergeWarm = 5

// converge measures refresh convergence with the real binaries: the source's
// change feed is the agent's push (YOLK_PUSH_URL). For each change, t0 is
// taken just before the PUT to the source; the end is the latest updatedAt
// (the time each worker installed the snapshot) among the workers, once the
// master's status shows all of them at the new version. Remote fetches per
// change come from the source's /stats.
func (h *harness) converge(ctx context.Context, workers int) {
	h.logf("convergence, %d workers: yolk (source push, %d changes)", workers, h.cfg.changes)
	r, err := h.convergeYolk(ctx, workers)
	if err != nil {
		h.fail("convergence: yolk, %d workers: %v", workers, err)
		return
	}
	h.res.Converge = append(h.res.Converge, r)
	if !h.cfg.runs("messenger") && workers == h.cfg.workers[0] {
		h.note("no convergence baseline: it comes from the messenger section's baseline.js run, which did not run")
	}
}

func (h *harness) convergeYolk(ctx context.Context, workers int) (ConvergeResult, error) {
	src, err := h.startSource(ctx)
	if err != nil {
		return ConvergeResult{System: sysYolk, Workers: workers}, err
	}
	defer src.p.stop(10 * time.Second)
	m, _, _, err := h.startServing(ctx, workers, src)
	if err != nil {
		return ConvergeResult{System: sysYolk, Workers: workers}, err
	}
	defer m.stop()
	res, err := h.measureConvergence(ctx, src, []convergeHost{{m: m}}, workers)
	if err == nil && res.Ms.Max > 10*res.Ms.P50 {
		h.note("convergence, %d workers: the slowest change took %s, %.0f× the median (%s)", workers, fmtMs(res.Ms.Max), res.Ms.Max/res.Ms.P50, res.Slowest)
	}
	return res, err
}

// convergeHost is one master whose workers a convergence measurement waits
// for; name is its host's name in a fleet, empty on a single host.
type convergeHost struct {
	name string
	m    *master
}

// measureConvergence makes convergeWarm untimed changes at src, then
// cfg.changes timed ones, one at a time, to the source's keys k0 to k99 in
// turn. For each change, t0 is taken just before the PUT; the end is
// the latest updatedAt among the workers of every host, once each host's
// master shows its workers workers at the new version. Fetches per change
// are the source's fetches over the timed changes.
func (h *harness) measureConvergence(ctx context.Context, src *source, hosts []convergeHost, workers int) (ConvergeResult, error) {
	res := ConvergeResult{System: sysYolk, Workers: workers}
	client := &http.Client{Timeout: 5 * time.Second}
	var slowest time.Duration
	var slowestText string
	res.By = map[string]int{}
	change := func(i int) (time.Duration, error) {
		key := "k" + strconv.Itoa(i%100)
		value := fmt.Sprintf(`{"name":"item %d","n":%d,"change":%d}`, i%100, i%100, i)
		t0 := time.Now()
		v, err := src.put(ctx, client, key, value)
		if err != nil {
			return 0, err
		}
		var end time.Time
		var parts []string
		for _, host := range hosts {
			ws, err := waitVersion(ctx, host.m, workers, v)
			if err != nil {
				if host.name != "" {
					err = fmt.Errorf("host %s: %w", host.name, err)
				}
				return 0, fmt.Errorf("change %d (version %s): %w", i, v, err)
			}
			for _, w := range ws {
				if w.Cache.UpdatedAt.After(end) {
					end = w.Cache.UpdatedAt
				}
				res.By[w.Cache.By]++
				of := ""
				if host.name != "" {
					of = " of " + host.name
				}
				parts = append(parts, fmt.Sprintf("worker %d%s got version %s by %s after %s",
					w.PID, of, w.Cache.Version, w.Cache.By, fmtMs(ms(w.Cache.UpdatedAt.Sub(t0)))))
			}
		}
		d := end.Sub(t0)
		if d > slowest {
			slowest, slowestText = d, fmt.Sprintf("version %s: %s", v, strings.Join(parts, ", "))
		}
		return d, nil
	}
	for i := range convergeWarm {
		if _, err := change(i); err != nil {
			return res, err
		}
	}
	res.By, slowest, slowestText = map[string]int{}, 0, "" // count the measured changes only
	s0, err := src.stats(ctx)
	if err != nil {
		return res, err
	}
	lat := make([]float64, 0, h.cfg.changes)
	for i := range h.cfg.changes {
		d, err := change(convergeWarm + i)
		if err != nil {
			return res, err
		}
		lat = append(lat, ms(d))
	}
	s1, err := src.stats(ctx)
	if err != nil {
		return res, err
	}
	res.Ms = quantilesOf(lat)
	res.FetchesPerChange = float64(s1.Fetches-s0.Fetches) / float64(h.cfg.changes)
	res.Slowest = slowestText
	return res, nil
}

// waitVersion polls the master's status until every worker reports version
// v or later, and returns the workers then.
func waitVersion(ctx context.Context, m *master, workers int, v string) ([]yolkProc, error) {
	want, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("version %q is not a number", v)
	}
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for {
		st, err := m.status(ctx)
		if err != nil {
			last = err.Error()
		} else {
			ws, _ := st.workers(workers)
			n := 0
			for _, w := range ws {
				if w.Cache == nil {
					continue
				}
				if got, err := strconv.ParseUint(w.Cache.Version, 10, 64); err == nil && got >= want {
					n++
				}
			}
			if n == workers {
				return ws, nil
			}
			last = fmt.Sprintf("%d of %d workers at version %s", n, workers, v)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("not converged within 10s: %s", last)
		}
		select { // the end is the workers' own updatedAt: polling faster only takes CPU from them
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}
