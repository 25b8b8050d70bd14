package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// tailContender is one server of the http-tail section, started as a cluster
// (runCluster): procs processes of role with per acceptors each, and
// GOMAXPROCS gomaxprocs (0: the default).
type tailContender struct {
	system     string
	procs, per int
	gomaxprocs int
	role       string
}

var tailContenders = []tailContender{
	{"event loop, 2 processes x 1 loop", 2, 1, 0, "loop-http"},
	{"event loop, 1 process x 2 loops", 1, 2, 0, "loop-http"},
	{"event loop, 2 processes x 1 loop, GOMAXPROCS=1", 2, 1, 1, "loop-http"},
	{"floor, 2 processes, GOMAXPROCS=1", 2, 1, 1, "raw-http-fd"},
}

// httpTail measures what the p99 of GET /data/{key} depends on: node's
// cluster, the floor (1 process) and the tailContenders, in rounds, with 2
// workers. It logs every round and each system's spread.
func (h *harness) httpTail(ctx context.Context) {
	const workers = 2
	rounds, secs := h.cfg.roundsFor(workers), h.cfg.wrkRoundDur
	from := len(h.res.HTTP)
	sides := []roundSide{
		{"node cluster", func(int) error { return h.httpNode(ctx, workers, secs) }},
		{"the floor (1 process)", func(int) error { return h.httpGo(ctx, "raw-http", sysFloor, workers, nil, secs) }},
	}
	for _, c := range tailContenders {
		sides = append(sides, roundSide{c.system, func(int) error { return h.httpCluster(ctx, c, secs) }})
	}
	for i, err := range h.runRounds(ctx, "HTTP tail", rounds, sides) {
		if err != nil {
			h.fail("HTTP tail: %s: %v", sides[i].name, err)
		}
	}
	merged := medianRounds(h.res.HTTP[from:])
	h.res.HTTP = append(h.res.HTTP[:from], merged...)
	var node HTTPResult
	for _, r := range merged {
		if r.System == sysNode {
			node = r
		}
	}
	for _, r := range merged {
		var rps, p99 []string
		var rs, ps []float64
		for _, x := range r.PerRound {
			rps = append(rps, fmtCount(x.RPS))
			p99 = append(p99, fmtMs(x.P99Ms))
			rs, ps = append(rs, x.RPS), append(ps, x.P99Ms)
		}
		sr, sp := spreadOf(rs), spreadOf(ps)
		var vs []string // p99 over node's in the same round
		for _, x := range ratiosOf(ps, perRound(node, func(x HTTPRound) float64 { return x.P99Ms })) {
			vs = append(vs, fmt.Sprintf("%.2f", x))
		}
		h.logf("tail %-48s p99 / node's p99, per round: %s", r.System, strings.Join(vs, " "))
		h.logf("tail %-48s rps %s (median %s, IQR %s..%s, %.2fx node) | p99 %s (median %s, IQR %s..%s, %.2fx node) | %s",
			r.System, strings.Join(rps, " "), fmtCount(sr.Median), fmtCount(sr.Q1), fmtCount(sr.Q3), sr.Median/node.RPS,
			strings.Join(p99, " "), fmtMs(sp.Median), fmtMs(sp.Q1), fmtMs(sp.Q3), sp.Median/node.P99Ms, r.Processes)
	}
}

// httpCluster measures one tailContender, and notes how the kernel spread
// the connections (of the warm-up and the measured run) over its acceptors.
func (h *harness) httpCluster(ctx context.Context, c tailContender, secs int) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	args := []string{"cluster", addr, strconv.Itoa(c.procs), strconv.Itoa(c.per), strconv.Itoa(c.gomaxprocs), c.role}
	p, err := startProc(c.system, h.bins.path("bench"), args, baseEnv())
	if err != nil {
		return err
	}
	defer p.stop(5 * time.Second)
	if _, err := p.waitLine(ctx, 20*time.Second, "ready"); err != nil {
		return err
	}
	if _, err := fetchSample(ctx, "http://"+addr+"/data/k7"); err != nil {
		return err
	}
	r, err := h.runWrk(ctx, "http://"+addr, secs, nil)
	if err != nil {
		return err
	}
	spread := map[string]int{}
	for line := range strings.Lines(p.out.tail(maxLines)) {
		if who, ok := strings.CutPrefix(strings.TrimSpace(line), "conn "); ok {
			spread[who]++
		}
	}
	var counts []string
	for _, who := range slices.Sorted(maps.Keys(spread)) {
		counts = append(counts, strconv.Itoa(spread[who]))
	}
	r.System, r.Workers = c.system, 2
	r.Processes = fmt.Sprintf("%d processes x %d %s; connections per acceptor %s", c.procs, c.per, c.role, strings.Join(counts, "/"))
	h.logf("%s: %s rps, p99 %s; connections per acceptor: %s", c.system, fmtCount(r.RPS), fmtMs(r.P99Ms), strings.Join(counts, "/"))
	h.res.HTTP = append(h.res.HTTP, r)
	return nil
}

func perRound(r HTTPResult, f func(HTTPRound) float64) []float64 {
	xs := make([]float64, len(r.PerRound))
	for i, x := range r.PerRound {
		xs[i] = f(x)
	}
	return xs
}
