package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// The notes under each table of the scale section: what limits the curve and
// what would bend it. The figures they quote come from the run; the reasons
// are what the code does (cache, bus, baseline.js), not measured here.

// span returns the least and the largest of f over xs, and whether there was any.
func span[T any](xs []T, f func(T) (float64, bool)) (lo, hi float64, ok bool) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, x := range xs {
		if v, use := f(x); use && finite(v) {
			lo, hi, ok = min(lo, v), max(hi, v), true
		}
	}
	return lo, hi, ok
}

func noteFanout(res *ScaleResults) string {
	total := func(sys string) (string, bool) {
		lo, hi, ok := span(res.Fanout, func(f FanoutResult) (float64, bool) { return f.TotalMsgsPerSec, f.System == sys })
		return fmtRate(lo) + " to " + fmtRate(hi), ok
	}
	var b strings.Builder
	y, yok := total(sysYolk)
	n, nok := total(sysNATS)
	e, eok := total(sysEgg)
	if yok && nok {
		fmt.Fprintf(&b, "- **What limits it.** From 1 to 16 workers yolk's total ranges over %s and raw NATS's over %s, while each worker's share falls as 1/W.", y, n)
		if lo, hi, ok := ratioEnds(res); ok {
			fmt.Fprintf(&b, " yolk / raw NATS is %.2f× with the fewest workers and %.2f× with the most.", lo, hi)
		}
		b.WriteString(" Raw NATS sends one NATS message per event, so its total is what the master's nats-server can parse, copy and write message by message, on 2 cores that the sender and the W receivers share. yolk sends the events of a burst in batches (wire version 3, `bus/batch.go`): the server and every receiver pay the per-message costs (parsing the protocol line, which holds the subject `yolk.app.<event>.<sender>`, and nats.go's hand-off to the subscription's goroutine) once per batch, and the more receivers there are, the more copies a batch saves. What is left is per event: the agent encoding and checking it, each worker's decode and handler, the bytes written to W connections, and, with many workers, W processes waking on 2 cores.")
		if eok {
			fmt.Fprintf(&b, " The egg baseline (%s) forwards every message through its master's one thread, which serialises it and writes it to each worker's pipe.", e)
		}
		b.WriteString("\n")
	}
	b.WriteString("- **What would bend it.** More cores (nats-server writes to each client from a goroutine of its own), or copying each event once instead of W times: the workers reading one ring buffer in shared memory (a memfd the agent writes once) instead of W sockets.\n\n")
	return b.String()
}

// ratioEnds returns yolk / raw NATS at the fewest and at the most workers
// both were measured with.
func ratioEnds(res *ScaleResults) (first, last float64, ok bool) {
	rate := map[string]map[int]float64{}
	for _, f := range res.Fanout {
		if rate[f.System] == nil {
			rate[f.System] = map[int]float64{}
		}
		rate[f.System][f.Workers] = f.TotalMsgsPerSec
	}
	var ws []int
	for w, y := range rate[sysYolk] {
		if n := rate[sysNATS][w]; n > 0 && y > 0 {
			ws = append(ws, w)
		}
	}
	if len(ws) == 0 {
		return 0, 0, false
	}
	slices.Sort(ws)
	a, z := ws[0], ws[len(ws)-1]
	return rate[sysYolk][a] / rate[sysNATS][a], rate[sysYolk][z] / rate[sysNATS][z], true
}

func noteConverge(res *ScaleResults) string {
	var ok []DataPoint
	var refused *DataPoint
	for i, d := range res.Data {
		switch {
		case d.Error == "" && d.Ms.N > 0:
			ok = append(ok, d)
		case strings.HasPrefix(d.Error, "refused"):
			refused = &res.Data[i]
		}
	}
	var b strings.Builder
	if len(ok) >= 2 {
		big := ok[len(ok)-1]
		mb := float64(big.Bytes) / 1e6
		fmt.Fprintf(&b, "- **What limits it.** Past 100 KB the time grows about in proportion to the data set (%s at %s: %.0f ms per MB), whatever the size of the change: every change moves the whole data set, several times. The source re-encodes it for the PUT (%s at %s); the agent fetches it, parses, sorts and hashes it (SHA-256) and writes it to the master's object store in 128 KiB chunks, which the object store hashes again; then each of the %d workers reads every chunk back, checks the object's digest, and rebuilds the snapshot (parse, sort, hash, compare with the published digest). So a change costs at least %d full passes over the data on 2 cores, and the p99 (%s at %s) is that work meeting the garbage collector and the machine's other load.\n",
			fmtMs(big.Ms.P50), fmtBytes(float64(big.Bytes)), big.Ms.P50/mb, fmtMs(big.PutMs.P50), fmtBytes(float64(big.Bytes)), big.Workers, 2+2*big.Workers, fmtMs(big.Ms.P99), fmtBytes(float64(big.Bytes)))
	}
	if refused != nil {
		fmt.Fprintf(&b, "- **Where it stops.** The %s data set is refused: the agent reads at most YOLK_SOURCE_MAX_BYTES from the source (64 MiB here; 32 MiB by default), logs the error and keeps the last data set it had (here, at start, none). The bus is not the limit: nothing larger than 768 KiB goes in one message (NATS's 1 MiB payload); larger snapshots go through the object store in chunks.\n",
			fmtBytes(float64(refused.Target)))
	}
	b.WriteString("- **What would bend it.** Moving the change, not the data set: the source's change event names the key, so the agent could fetch and publish a delta that the workers apply to their snapshot (cost in the size of the change; a full fetch stays the fallback). Or one parse for all: the agent writes the parsed snapshot once, in a layout that needs no parsing (a sorted index and the values), into a memfd or a file under /dev/shm, and the workers map it read-only; a change then costs one write and W small maps instead of W reads, hashes and parses. A larger `YOLK_SOURCE_MAX_BYTES` only moves the wall.\n\n")
	return b.String()
}

func noteMemory(res *ScaleResults) string {
	var b strings.Builder
	if s, ok := memorySlopes(res); ok {
		fmt.Fprintf(&b, "- **What limits it.** Memory grows as workers × data: each worker's RSS grew %.1f bytes per byte of data, the agent's %.1f and the master's %.1f, so with %d workers the service holds about %.0f bytes of RSS per byte of data. A worker keeps one copy of the items (a snapshot is one allocation that its map points into) but, at rest, also the buffers it read the chunks and the record into, which the garbage collector frees only at its next cycle and returns to the kernel later still (GOGC=100 lets the heap reach twice what is live). The master holds the object store's copy (JetStream keeps it in memory); the agent, its own snapshot and the garbage of the fetched body. After the timed changes the totals are higher again: the garbage of each change, not yet returned.\n",
			s.worker*1e6/s.dataBytes, s.agent*1e6/s.dataBytes, s.master*1e6/s.dataBytes, s.workers, s.total*1e6/s.dataBytes)
	}
	b.WriteString("- **What would bend it.** Workers sharing one read-only snapshot mapped from a memfd or a file under /dev/shm: the data set in memory once for all workers (page cache, counted in each worker's RSS but not multiplied), so memory would grow as data + workers × a small index, not workers × data. Short of that: returning freed memory at once after an install (`debug.FreeOSMemory`, or a `GOMEMLIMIT`) would cut each worker's RSS at rest towards one copy; and the master's JetStream copy could live in file storage.\n\n")
	return b.String()
}

func noteFetches(res *ScaleResults) string {
	var b strings.Builder
	if len(res.Fetches) > 0 {
		first, last := res.Fetches[0], res.Fetches[len(res.Fetches)-1]
		fmt.Fprintf(&b, "- **What limits it.** yolk's agent fetches once per change and publishes the snapshot to the master's bucket, which every worker watches: the remote sees one fetch whatever the number of workers. In the egg baseline every worker GETs the data set itself on `refresh`, so the source sees W fetches per change (and W times the bytes). Convergence still grows with the workers in both (yolk: p50 %s with %d, %s with %d): each worker decodes each snapshot, and the W workers share 2 cores.\n",
			fmtMs(first.Yolk.Ms.P50), first.Workers, fmtMs(last.Yolk.Ms.P50), last.Workers)
	}
	b.WriteString("- **What would bend it.** The fetch count is already flat. A fleet (make bench's fleet section) keeps it at one per change for every host. The convergence's growth with the workers bends with the shared snapshot above (no per-worker decode).\n\n")
	return b.String()
}
