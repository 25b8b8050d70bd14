package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// notesMarker separates the generated part of BENCHMARKS.md from the
// hand-written notes, which a regeneration keeps as they are.
const notesMarker = "<!-- notes -->"

// defaultNotes starts the notes of a new BENCHMARKS.md.
const defaultNotes = notesMarker + `
## What bounds each figure

_Hand-written: ` + "`make bench`" + ` keeps everything from the notes marker above to the end of the file._
`

// The egg figures of the anchors' README (real egg 3.34 on this kind of
// machine): the lifecycle baseline, which no program in the anchors measures.
const (
	eggColdStartMs = 1050
	eggRestMB      = 336
	eggStopMs      = 1500
)

// cell is one figure of a table: a value to compute ratios with, and its text.
type cell struct {
	v    float64
	ok   bool
	text string
}

func value(v float64, format func(float64) string) cell {
	if !finite(v) {
		return cell{}
	}
	return cell{v: v, ok: true, text: format(v)}
}

func (c cell) String() string {
	if c.text == "" {
		return "—"
	}
	return c.text
}

// row is one line of a comparison table.
type row struct {
	figure           string
	yolk, base, ceil cell
	targets          []target
}

// target is one goal on a row's figure, and its verdict.
type target struct {
	text    string
	verdict verdict
	// rounds holds the medians and spreads of a target judged from rounds
	// (its Figure is filled in by the targets table); nil for the others.
	rounds *TargetResult
	format func(float64) string // of the figures in rounds
}

// checked is a target decided without rounds.
func checked(text string, v verdict) target { return target{text: text, verdict: v} }

// judged is a target decided from rounds (judge): yolk's figure of each round
// against the peer's, in the order of the rounds.
func judged(text, peer string, g goal, yolk, against []float64, format func(float64) string) target {
	y, p := spreadOf(yolk), spreadOf(against)
	v := judge(g, y, p)
	return target{text: text, verdict: v, format: format,
		rounds: &TargetResult{Target: text, Peer: peer, Yolk: y, Against: p, Ratio: spreadOf(ratiosOf(yolk, against)), Verdict: v.word()}}
}

// word is the verdict in the JSON results.
func (v verdict) word() string {
	switch v {
	case pass:
		return "pass"
	case inconclusive:
		return "inconclusive"
	case fail:
		return "fail"
	}
	return "undecided"
}

// targetText is a row's targets and verdicts for its section's table.
func targetText(ts []target) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = t.text
		if v := t.verdict.String(); v != "" {
			parts[i] += ": " + v
		}
	}
	return strings.Join(parts, "; ")
}

// table is one section of the report.
type table struct {
	title      string
	name       string // the column name of the yolk figures; default "yolk"
	base, ceil string // the column names of the baseline and the ceiling; no ceiling columns if ceil is empty
	rows       []row
	method     []string // how it was measured
}

func ratio(a, b cell) string {
	if !a.ok || !b.ok || b.v == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a.v/b.v)
}

func (t table) render(b *strings.Builder) {
	name := cmp.Or(t.name, "yolk")
	fmt.Fprintf(b, "## %s\n\n", t.title)
	if t.ceil == "" {
		fmt.Fprintf(b, "| figure | %s | %s | %s / %s | target |\n", name, t.base, name, t.base)
		b.WriteString("| --- | --- | --- | --- | --- |\n")
	} else {
		fmt.Fprintf(b, "| figure | %s | %s | %s | %s / %s | %s / %s | target |\n", name, t.base, t.ceil, name, t.base, name, t.ceil)
		b.WriteString("| --- | --- | --- | --- | --- | --- | --- |\n")
	}
	for _, r := range t.rows {
		target := targetText(r.targets)
		if t.ceil == "" {
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", r.figure, r.yolk, r.base, ratio(r.yolk, r.base), target)
			continue
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s |\n",
			r.figure, r.yolk, r.base, r.ceil, ratio(r.yolk, r.base), ratio(r.yolk, r.ceil), target)
	}
	b.WriteString("\n")
	for _, m := range t.method {
		fmt.Fprintf(b, "- %s\n", m)
	}
	if len(t.method) > 0 {
		b.WriteString("\n")
	}
}

// Number formats.
func fmtRate(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM/s", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.0fk/s", v/1e3)
	}
	return fmt.Sprintf("%.0f/s", v)
}

func fmtMs(v float64) string {
	switch {
	case v < 1:
		return fmt.Sprintf("%.3f ms", v)
	case v < 10:
		return fmt.Sprintf("%.2f ms", v)
	case v < 100:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

func fmtMB(v float64) string { return fmt.Sprintf("%.1f MB", v) }

func fmtCount(v float64) string { return fmt.Sprintf("%.0f", v) }

func fmtPlain(v float64) string { return fmt.Sprintf("%.2f", v) }

func sizeText(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

// workerCounts lists the worker counts present, ascending.
func workerCounts[T any](xs []T, workers func(T) int) []int {
	var ws []int
	for _, x := range xs {
		if w := workers(x); !slices.Contains(ws, w) {
			ws = append(ws, w)
		}
	}
	slices.Sort(ws)
	return ws
}

func fanoutTable(res *Results) table {
	t := table{title: "Fan-out: agent to every worker (SendToApp), messages delivered per second", base: sysEgg, ceil: sysNATS}
	find := func(sys string, w, size int) (FanoutResult, bool) {
		i := slices.IndexFunc(res.Fanout, func(f FanoutResult) bool { return f.System == sys && f.Workers == w && f.Size == size })
		if i < 0 {
			return FanoutResult{}, false
		}
		return res.Fanout[i], true
	}
	var sizes []int
	for _, f := range res.Fanout {
		if !slices.Contains(sizes, f.Size) {
			sizes = append(sizes, f.Size)
		}
	}
	slices.Sort(sizes)
	fc := func(f FanoutResult, ok bool) cell {
		if !ok {
			return cell{}
		}
		c := value(f.TotalMsgsPerSec, fmtRate)
		c.text = fmt.Sprintf("%s (%s per worker)", fmtRate(f.TotalMsgsPerSec), fmtRate(f.PerWorkerMsgsPerSec))
		if f.Lost > 0 {
			c.text += fmt.Sprintf(", **%d lost**", f.Lost)
		}
		return c
	}
	for _, w := range workerCounts(res.Fanout, func(f FanoutResult) int { return f.Workers }) {
		for _, size := range sizes {
			y, yok := find(sysYolk, w, size)
			r := row{figure: fmt.Sprintf("%d workers, %s, total", w, sizeText(size))}
			r.yolk = fc(y, yok)
			r.base = fc(find(sysEgg, w, size))
			r.ceil = fc(find(sysNATS, w, size))
			if !r.yolk.ok && !r.base.ok && !r.ceil.ok {
				continue
			}
			r.targets = []target{checked("0 lost", verdictOf(y.Lost == 0, r.yolk))}
			if w == 2 && size == 128 {
				e, _ := find(sysEgg, w, size)
				n, _ := find(sysNATS, w, size)
				vsNATS := judged("≥ 0.8× raw NATS, 0 lost", sysNATS, goal{0.8, true}, y.PerRound, n.PerRound, fmtRate)
				if yok && y.Lost > 0 {
					vsNATS.verdict, vsNATS.rounds.Verdict = fail, fail.word()
				}
				r.targets = []target{judged("≥ 5× baseline", sysEgg, goal{5, true}, y.PerRound, e.PerRound, fmtRate), vsNATS}
			}
			t.rows = append(t.rows, r)
		}
	}
	p := res.Params
	t.method = []string{
		"yolk: the real master starts this harness's binary as its agent and workers (YOLK_AGENT_BIN, YOLK_WORKER_BIN); they log in with the credentials the master minted and report ready. The agent calls `SendToApp` with a JSON string of the payload size as data (yolk's envelope comes on top), once per message; in wire version 3 the events the agent sends while its flusher goroutine is waking up share one NATS message (`bus/batch.go`). Each worker's handler counts. `-yolk-env BENCH_WIRE=2` measures yolk without batches.",
		"raw NATS: an embedded nats-server in one process, 1 publisher and W subscribers with plain nats.go in processes of their own, payloads of exactly the size, one NATS message each, on one subject.",
		"Both: a begin message, n messages, an end message; each receiver acks the end with its count and the time its last message arrived. The sender publishes in batches with a Flush after each, and never more than 8 MiB of payload ahead of the slowest receiver (receivers report progress every window/8 messages). Total = n × W / (last receipt − first send); per worker = total / W. Lost = n − count, over all runs.",
		"Runs: " + p["fanout"] + "; each figure is the median round. The baseline's turn in each round: `" + p["baseline"] + "` (fresh processes; the first of its two repetitions warms up); it sends 128 B only: the 4 KiB rows have no baseline.",
	}
	return t
}

func rttTable(res *Results) table {
	t := table{title: "Round trip: worker to agent and back to that worker", base: sysEgg, ceil: sysNATS}
	find := func(sys, variant string) (RTTResult, bool) {
		i := slices.IndexFunc(res.RTT, func(r RTTResult) bool {
			return r.System == sys && r.Workers == 2 && (variant == "" || r.Variant == variant)
		})
		if i < 0 {
			return RTTResult{}, false
		}
		return res.RTT[i], true
	}
	if len(res.RTT) == 0 {
		return t
	}
	base, bok := find(sysEgg, "")
	ceil, cok := find(sysNATS, rttRequest)
	q := func(r RTTResult, ok bool, f func(Quantiles) float64) cell {
		if !ok || r.Ms.N == 0 {
			return cell{}
		}
		return value(f(r.Ms), fmtMs)
	}
	quants := []struct {
		name string
		f    func(Quantiles) float64
	}{
		{"p50", func(q Quantiles) float64 { return q.P50 }},
		{"p99", func(q Quantiles) float64 { return q.P99 }},
		{"max", func(q Quantiles) float64 { return q.Max }},
	}
	for _, v := range []struct{ variant, name string }{
		{rttRequest, "`RequestAgent` (request/reply)"},
		{rttSendPair, "`SendToAgent` + `SendTo` (egg's pattern)"},
	} {
		y, yok := find(sysYolk, v.variant)
		if !yok && v.variant == rttSendPair {
			continue
		}
		for _, qq := range quants {
			r := row{figure: v.name + " " + qq.name, yolk: q(y, yok, qq.f), base: q(base, bok, qq.f)}
			if v.variant == rttRequest {
				r.ceil = q(ceil, cok, qq.f)
				per := func(r RTTResult) []float64 {
					xs := make([]float64, len(r.PerRound))
					for i, q := range r.PerRound {
						xs[i] = qq.f(q)
					}
					return xs
				}
				switch qq.name {
				case "p50":
					r.targets = []target{
						judged("≤ baseline", sysEgg, goal{1, false}, per(y), per(base), fmtMs),
						judged("≤ 1.15× raw NATS", sysNATS, goal{1.15, false}, per(y), per(ceil), fmtMs),
					}
				case "p99":
					r.targets = []target{judged("≤ baseline", sysEgg, goal{1, false}, per(y), per(base), fmtMs)}
				}
			}
			t.rows = append(t.rows, r)
		}
	}
	t.method = []string{
		"2 workers; in the fan-out section's rounds, after the fan-out: " + res.Params["rtt"] + " for yolk and raw NATS, and baseline.js's own (500 warm-up trips, then the rest) in its turn; each quantile is the median round. Sequential trips carrying a ~100-byte JSON payload, timed in the worker.",
		"yolk: a worker peer calls `RequestAgent` and the agent peer's handler replies; the second variant sends with `SendToAgent` (acknowledged) and the agent answers with `SendTo(worker)`, timed until the worker's handler has it. raw NATS: `nc.Request` from the publisher process to subscriber 0, which responds. Baseline: baseline.js's `sendToAgent` then `sendTo(pid)` through egg's master.",
	}
	return t
}

func convergeTable(res *Results) table {
	t := table{title: "Refresh convergence: a change at the source until every worker has it", base: sysEgg, ceil: "ceiling"}
	find := func(sys string, w int) (ConvergeResult, bool) {
		i := slices.IndexFunc(res.Converge, func(c ConvergeResult) bool { return c.System == sys && c.Workers == w })
		if i < 0 {
			return ConvergeResult{}, false
		}
		return res.Converge[i], true
	}
	for _, w := range workerCounts(res.Converge, func(c ConvergeResult) int { return c.Workers }) {
		y, yok := find(sysYolk, w)
		b, bok := find(sysEgg, w)
		if !yok {
			continue
		}
		q := func(c ConvergeResult, ok bool, f func(Quantiles) float64) cell {
			if !ok || c.Ms.N == 0 {
				return cell{}
			}
			return value(f(c.Ms), fmtMs)
		}
		p99 := row{figure: fmt.Sprintf("%d workers, p99", w), yolk: q(y, yok, func(q Quantiles) float64 { return q.P99 }), base: q(b, bok, func(q Quantiles) float64 { return q.P99 })}
		fetch := row{figure: fmt.Sprintf("%d workers, remote fetches per change", w), yolk: value(y.FetchesPerChange, fmtPlain)}
		if bok {
			fetch.base = value(b.FetchesPerChange, fmtPlain)
		}
		if w == 2 {
			p99.targets = []target{checked("≤ baseline", verdictOf(p99.yolk.v <= p99.base.v, p99.yolk, p99.base))}
			fetch.targets = []target{checked("1", verdictOf(fetch.yolk.v <= 1+1e-9 && fetch.yolk.v > 0, fetch.yolk))}
		}
		t.rows = append(t.rows,
			row{figure: fmt.Sprintf("%d workers, p50", w), yolk: q(y, yok, func(q Quantiles) float64 { return q.P50 }), base: q(b, bok, func(q Quantiles) float64 { return q.P50 })},
			p99,
			row{figure: fmt.Sprintf("%d workers, max", w), yolk: q(y, yok, func(q Quantiles) float64 { return q.Max }), base: q(b, bok, func(q Quantiles) float64 { return q.Max })},
			fetch)
		if len(y.By) > 0 {
			t.rows = append(t.rows, row{figure: fmt.Sprintf("%d workers, refresh that brought each change to each worker", w), yolk: cell{text: byText(y.By)}})
		}
	}
	t.method = []string{
		"yolk: real bin/source, master, agent and workers, push on (YOLK_PUSH_URL = the source's NATS). " + res.Params["changes"] + " changes, one at a time, after " + fmt.Sprint(convergeWarm) + " untimed ones. t0 is taken just before the `PUT /data/{key}` to the source; the end is the latest `updatedAt` (when a worker installed the snapshot) among the workers once the master's status (asked over the bus with the control credential, as `master status` does) shows all at the new version. So yolk's figure also covers the source's write, its change event, the agent's fetch, its publish to the shared bucket (JetStream on the master's bus, compare-and-set) and the workers' watch of it. Fetches per change from the source's `/stats`.",
		"Baseline: baseline.js's push (`" + res.Params["basePush"] + "`, after the messenger rounds; each quantile the median of its repetitions): from the agent's `sendToApp('refresh')` (after the source's version was bumped) until the last worker acks, each worker fetching the data set itself.",
	}
	return t
}

func fleetTable(res *Results) table {
	f := res.Fleet
	if f == nil {
		return table{}
	}
	t := table{title: fmt.Sprintf("Fleet convergence: a change at the source until every worker of every host has it (%d hosts × %d workers)", f.Hosts, f.Workers),
		name: "fleet", base: fmt.Sprintf("one host (%d workers)", f.Workers)}
	one, ook := ConvergeResult{}, false
	if i := slices.IndexFunc(res.Converge, func(c ConvergeResult) bool { return c.System == sysYolk && c.Workers == f.Workers }); i >= 0 {
		one, ook = res.Converge[i], true
	}
	q := func(c ConvergeResult, ok bool, f func(Quantiles) float64) cell {
		if !ok || c.Ms.N == 0 {
			return cell{}
		}
		return value(f(c.Ms), fmtMs)
	}
	for _, qq := range []struct {
		name string
		f    func(Quantiles) float64
	}{
		{"p50", func(q Quantiles) float64 { return q.P50 }},
		{"p99", func(q Quantiles) float64 { return q.P99 }},
		{"max", func(q Quantiles) float64 { return q.Max }},
	} {
		t.rows = append(t.rows, row{figure: "change to every worker, " + qq.name, yolk: q(f.ConvergeResult, true, qq.f), base: q(one, ook, qq.f)})
	}
	fetch := row{figure: "remote fetches per change", yolk: value(f.FetchesPerChange, fmtPlain)}
	if ook {
		fetch.base = value(one.FetchesPerChange, fmtPlain)
	}
	fetch.targets = []target{checked("1", verdictOf(math.Abs(f.FetchesPerChange-1) < 1e-9, fetch.yolk))}
	t.rows = append(t.rows, fetch)
	if len(f.By) > 0 {
		by := row{figure: "refresh that brought each change to each worker", yolk: cell{text: byText(f.By)}}
		if ook && len(one.By) > 0 {
			by.base = cell{text: byText(one.By)}
		}
		t.rows = append(t.rows, by)
	}
	t.method = []string{
		fmt.Sprintf("A %d-node cluster of the real nats-server (built from go.mod's module), JetStream domain fleet, on free loopback ports; bin/source; %d masters of %d workers, each with YOLK_CLUSTER_URL = the %d nodes' leaf URLs, YOLK_CLUSTER_USER/PASSWORD, YOLK_HOST and YOLK_LEASE_TTL=%s, and otherwise the one-host section's environment (push on), plus YOLK_PULL_INTERVAL=1h and YOLK_FORCE_INTERVAL=1h so that only the source's change events cause fetches.",
			f.Nodes, f.Hosts, f.Workers, f.Nodes, fleetLeaseTTL),
		"Measured as the one-host section measures, by the same code: " + res.Params["changes"] + " changes, one at a time, after " + fmt.Sprint(convergeWarm) + " untimed ones; t0 just before the `PUT /data/{key}`; the end is the latest `updatedAt` among the workers of every host once each master's status shows its workers at the new version. So the fleet's figure also covers the leader agent's fetch, its publish to the fleet's shared copy on the cluster (a JetStream bucket, 3 replicas, file storage), and each host's agent copying it into its host's bucket for its workers. Fetches per change from the source's `/stats`, for the whole fleet.",
		fmt.Sprintf("The one-host column is the %d-worker row of the refresh convergence section above, from the same run. All the fleet's processes (%d nats-servers, %d masters, their agents and workers, the source) share this one machine's CPUs.", f.Workers, f.Nodes, f.Hosts),
	}
	return t
}

// byText lists refresh kinds by count, most first: "push 398, pull 2".
func byText(by map[string]int) string {
	kinds := make([]string, 0, len(by))
	for k := range by {
		kinds = append(kinds, k)
	}
	slices.SortFunc(kinds, func(a, b string) int {
		if by[a] != by[b] {
			return by[b] - by[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%s %d", k, by[k])
	}
	return strings.Join(parts, ", ")
}

func httpTable(res *Results) table {
	t := table{title: "HTTP: GET /data/{key} from the cache", base: sysNode, ceil: sysGo}
	find := func(sys string, w int) (HTTPResult, bool) {
		i := slices.IndexFunc(res.HTTP, func(r HTTPResult) bool { return r.System == sys && r.Workers == w })
		if i < 0 {
			return HTTPResult{}, false
		}
		return res.HTTP[i], true
	}
	for _, w := range workerCounts(res.HTTP, func(r HTTPResult) int { return r.Workers }) {
		y, yok := find(sysYolk, w)
		n, nok := find(sysNode, w)
		g, gok := find(sysGo, w)
		c := func(r HTTPResult, ok bool, v float64, f func(float64) string) cell {
			if !ok {
				return cell{}
			}
			return value(v, f)
		}
		rps := row{figure: fmt.Sprintf("%d workers, requests/s", w), yolk: c(y, yok, y.RPS, fmtCount), base: c(n, nok, n.RPS, fmtCount), ceil: c(g, gok, g.RPS, fmtCount)}
		p50 := row{figure: fmt.Sprintf("%d workers, p50", w), yolk: c(y, yok, y.P50Ms, fmtMs), base: c(n, nok, n.P50Ms, fmtMs), ceil: c(g, gok, g.P50Ms, fmtMs)}
		p99 := row{figure: fmt.Sprintf("%d workers, p99", w), yolk: c(y, yok, y.P99Ms, fmtMs), base: c(n, nok, n.P99Ms, fmtMs), ceil: c(g, gok, g.P99Ms, fmtMs)}
		bad := func(r HTTPResult) float64 { return float64(r.Non2xx + r.SockErrs) }
		errs := row{figure: fmt.Sprintf("%d workers, non-2xx + socket errors", w), yolk: c(y, yok, bad(y), fmtCount), base: c(n, nok, bad(n), fmtCount), ceil: c(g, gok, bad(g), fmtCount)}
		errs.targets = []target{checked("0", verdictOf(errs.yolk.v == 0, errs.yolk))}
		if w == 2 {
			per := func(r HTTPResult, f func(HTTPRound) float64) []float64 {
				xs := make([]float64, len(r.PerRound))
				for i, x := range r.PerRound {
					xs[i] = f(x)
				}
				return xs
			}
			rpsOf := func(x HTTPRound) float64 { return x.RPS }
			p99Of := func(x HTTPRound) float64 { return x.P99Ms }
			rps.targets = []target{
				judged("≥ 1.2× node", sysNode, goal{1.2, true}, per(y, rpsOf), per(n, rpsOf), fmtCount),
				judged("≥ 0.9× bare Go", sysGo, goal{0.9, true}, per(y, rpsOf), per(g, rpsOf), fmtCount),
			}
			p99.targets = []target{
				judged("≤ node's", sysNode, goal{1, false}, per(y, p99Of), per(n, p99Of), fmtMs),
				judged("≤ ½ node's", sysNode, goal{0.5, false}, per(y, p99Of), per(n, p99Of), fmtMs),
			}
		}
		t.rows = append(t.rows, rps, p50, p99, errs)
	}
	procs := map[string]string{}
	for _, r := range res.HTTP {
		procs[r.System] = r.Processes
	}
	var floor string
	if f, ok := find(sysFloor, 2); ok {
		floor = fmt.Sprintf("The floor, in the same run: a minimal HTTP/1.1 loop in Go without net/http (bench's raw-http: read a request head, write the prepared answer; %s) made %s requests/s, p50 %s, p99 %s.",
			f.Processes, fmtCount(f.RPS), fmtMs(f.P50Ms), fmtMs(f.P99Ms))
		if n, ok := find(sysNode, 2); ok && f.P99Ms > 0 {
			floor += fmt.Sprintf(" Node's p99 is %.2f× the floor's: a p99 at most half of node's needs a server %.2f× faster in the tail than the least one can do here.", n.P99Ms/f.P99Ms, f.P99Ms/(0.5*n.P99Ms))
		}
	}
	t.method = []string{
		"`" + res.Params["wrk"] + ", on 127.0.0.1; wrk shares the 2 cores with the server, the same for every system; one system at a time.",
		"yolk: real master (" + procs[sysYolk] + "), bin/source with 100 keys; the answer is the key's JSON value with Content-Type, X-Yolk-Version and X-Yolk-Worker. Bare Go: " + procs[sysGo] + ", the same bytes and headers from a map (measured again beside each yolk worker count). Node: cluster-http.js, " + procs[sysNode] + " (its body is `\"v0\"`-style, a few bytes shorter).",
	}
	if floor != "" {
		t.method = append(t.method, floor)
	}
	return t
}

func lifecycleTable(res *Results) table {
	t := table{title: "Lifecycle: yolk with 2 workers", base: "egg (anchors README, not run here)", ceil: "ceiling"}
	lc := res.Lifecycle
	if lc == nil {
		return t
	}
	if len(lc.ColdStartMs) > 0 {
		cold := value(median(lc.ColdStartMs), fmtMs)
		cold.text += fmt.Sprintf(" (%s–%s", fmtMs(slices.Min(lc.ColdStartMs)), fmtMs(slices.Max(lc.ColdStartMs)))
		if len(lc.ReadyLoggedMs) > 0 {
			cold.text += fmt.Sprintf("; the master logs yolk ready after %s", fmtMs(median(lc.ReadyLoggedMs)))
		}
		cold.text += ")"
		t.rows = append(t.rows, row{figure: fmt.Sprintf("cold start to first 200, median of %d", len(lc.ColdStartMs)),
			yolk: cold, base: value(eggColdStartMs, fmtMs), targets: []target{checked("< 100 ms", verdictOf(cold.v < 100, cold))}})
	}
	if lc.RestTotalMB > 0 {
		rest := value(lc.RestTotalMB, fmtMB)
		rest.text += " (" + rssText(lc.RestRSS) + ")"
		t.rows = append(t.rows, row{figure: "memory (RSS) at rest: master + agent + 2 workers", yolk: rest,
			base: value(eggRestMB, fmtMB), targets: []target{checked("< 60 MB", verdictOf(rest.v < 60, rest))}})
	}
	if lc.LoadTotalMB > 0 {
		load := value(lc.LoadTotalMB, fmtMB)
		load.text += " (" + rssText(lc.LoadRSS) + ")"
		t.rows = append(t.rows, row{figure: "memory (RSS) under the HTTP load", yolk: load})
	}
	if len(lc.StopMs) > 0 {
		stop := value(median(lc.StopMs), fmtMs)
		stop.text += fmt.Sprintf(" (%s–%s)", fmtMs(slices.Min(lc.StopMs)), fmtMs(slices.Max(lc.StopMs)))
		t.rows = append(t.rows, row{figure: fmt.Sprintf("SIGTERM until every process is gone (idle), median of %d", len(lc.StopMs)),
			yolk: stop, base: value(eggStopMs, fmtMs), targets: []target{checked("< 150 ms", verdictOf(stop.v < 150, stop))}})
	}
	if r := lc.Reload; r != nil {
		failed := value(float64(r.Non200+r.Errors), fmtCount)
		failed.text = fmt.Sprintf("%d of %d (%d non-200, %d errors; %d retried by the client; reload took %s)",
			r.Non200+r.Errors, r.Requests, r.Non200, r.Errors, r.Retries, fmtMs(r.TookMs))
		if r.FirstErr != "" {
			failed.text += "; first: " + strings.ReplaceAll(r.FirstErr, "|", "/")
		}
		t.rows = append(t.rows, row{figure: fmt.Sprintf("failed requests during a rolling reload, %d clients", r.Clients),
			yolk: failed, targets: []target{checked("0", verdictOf(failed.v == 0, failed))}})
	}
	t.method = []string{
		"Real binaries without -race. Cold start: from just before the exec of `master` (the source already running) to the first 200 of `GET /data/k0`, polled on fresh connections every millisecond. Memory: VmRSS from /proc/<pid>/status, after " + res.Params["restSeconds"] + " s at rest (the repetition with the median total), and the largest of three samples during the 2-worker wrk run. Stop: SIGTERM to the master, until the master and every child have exited (polled every millisecond).",
		"Reload: " + fmt.Sprint(reloadClients) + " Go clients loop GETs on keep-alive connections while the master is asked for a rolling reload over the bus (as `master reload` does), until both workers are new and ready, and 300 ms more. Go's client resends an idempotent request by itself when a reused connection closes before answering; those are counted as retried, not failed.",
		"The egg column is the README's measurement of real egg 3.34 on this kind of machine, not measured in this run.",
	}
	return t
}

func rssText(ps []ProcRSS) string {
	var parts []string
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("%s %.1f", p.Role, p.MB))
	}
	return strings.Join(parts, ", ")
}

// reportTables are the report's sections, in order.
func reportTables(res *Results) []table {
	return []table{fanoutTable(res), rttTable(res), convergeTable(res), fleetTable(res), httpTable(res), lifecycleTable(res)}
}

// roundTargets lists the targets judged from rounds, with their figures.
func roundTargets(tables []table) []TargetResult {
	var out []TargetResult
	for _, t := range tables {
		for _, r := range t.rows {
			for _, tg := range r.targets {
				if tg.rounds != nil {
					tr := *tg.rounds
					tr.Figure = shortTitle(t.title) + ": " + r.figure
					out = append(out, tr)
				}
			}
		}
	}
	return out
}

// verdictRule says, in the report, how the targets are decided.
func verdictRule(rounds string) string {
	return "Each speed target (the rows with an _against_ column) is measured with 2 workers in " + rounds + " rounds: in each round yolk and every system it is compared with take a turn, each round starting with the next system, so that a slow spell of the machine falls on all of them alike. " +
		"A cell gives the median round and, in brackets, the interquartile range (IQR: the middle half of the rounds, Q1 to Q3 interpolated between ranks; with 5 rounds, the 2nd to the 4th value). The per-round ratio is yolk's figure over the other's in the same round.\n\n" +
		"- **pass**: the medians meet the target and the IQRs do not overlap against it: for yolk ≥ k × other, yolk's Q1 ≥ k × the other's Q3; for yolk ≤ k × other, yolk's Q3 ≤ k × the other's Q1.\n" +
		"- **inconclusive**: the medians meet the target but the IQRs overlap against it (or a side has fewer than " + strconv.Itoa(minRoundsToPass) + " rounds): the noise could reverse it.\n" +
		"- **FAIL**: the medians miss the target.\n" +
		"- The per-round ratio is shown, not used by the verdict; the sections below give the ratio of the medians. The other targets are single figures: pass or FAIL.\n\n"
}

// spreadText is a figure's median and IQR: "921k/s (IQR 900k/s–950k/s)".
func spreadText(s Spread, format func(float64) string) string {
	if s.N == 0 {
		return "—"
	}
	return fmt.Sprintf("%s (IQR %s–%s)", format(s.Median), format(s.Q1), format(s.Q3))
}

func fmtRatio(v float64) string { return fmt.Sprintf("%.2f×", v) }

// renderReport renders the results as markdown: a header, a summary of the
// targets, a table per section, and what went wrong.
func renderReport(res *Results) string {
	var b strings.Builder
	b.WriteString("# yolk benchmarks\n\n")
	b.WriteString("<!-- Generated by bench/ (make bench): everything above the notes marker is rewritten at each run; write below it. -->\n\n")
	m := res.Machine
	fmt.Fprintf(&b, "- Command: `%s`\n", res.Command)
	fmt.Fprintf(&b, "- Date: %s; the run took %s", res.Date.Format("2006-01-02 15:04 MST"), res.Took)
	if res.Quick {
		b.WriteString(" (quick: reduced counts)")
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "- Machine: %d CPUs (runtime.NumCPU), %s, Linux %s; %s; node %s; wrk %s\n", m.CPUs, m.OS, m.Kernel, m.Go, m.Node, m.Wrk)
	fmt.Fprintf(&b, "- Load average (1, 5, 15 min) before the run: %s; after: %s. The machine is shared and noisy: compare the figures of one run with each other (the ratios), not with another run's.\n", m.LoadBefore, m.LoadAfter)
	if busy := maxLoad(m.LoadBefore, m.LoadAfter); m.CPUs > 0 && busy > 1.5*float64(m.CPUs) {
		fmt.Fprintf(&b, "- **Other work competed for the CPUs during this run** (a load average of %.1f on %d CPUs): every figure, and the baselines' too, is slowed unevenly; run again on a quieter machine before drawing conclusions.\n", busy, m.CPUs)
	}
	b.WriteString("\n")

	tables := reportTables(res)
	b.WriteString("## Targets\n\n")
	b.WriteString(verdictRule(res.Params["rounds"]))
	b.WriteString("| target | figure | yolk | against | yolk / against, per round | verdict |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, t := range tables {
		for _, r := range t.rows {
			for _, tg := range r.targets {
				if tg.text == "0 lost" || (tg.text == "0" && strings.Contains(r.figure, "socket")) {
					continue
				}
				verdict := tg.verdict.String()
				if verdict == "" {
					verdict = "not measured"
				}
				yolk, against, ratio := r.yolk.String(), "—", "—"
				if rd := tg.rounds; rd != nil {
					yolk = spreadText(rd.Yolk, tg.format)
					against = rd.Peer + " " + spreadText(rd.Against, tg.format)
					ratio = spreadText(rd.Ratio, fmtRatio)
				}
				fmt.Fprintf(&b, "| %s | %s: %s | %s | %s | %s | %s |\n", tg.text, shortTitle(t.title), r.figure, yolk, against, ratio, verdict)
			}
		}
	}
	b.WriteString("\n")
	for _, t := range tables {
		if len(t.rows) > 0 {
			t.render(&b)
		}
	}
	if len(res.Notes) > 0 {
		b.WriteString("## Notes on this run\n\n")
		for _, n := range res.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		b.WriteString("\n")
	}
	if len(res.Failures) > 0 {
		b.WriteString("## Measurements that failed\n\n")
		for _, f := range res.Failures {
			fmt.Fprintf(&b, "- %s\n", f)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// maxLoad is the largest 1-minute load average among /proc/loadavg excerpts.
func maxLoad(loads ...string) float64 {
	most := 0.0
	for _, l := range loads {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil && v > most {
			most = v
		}
	}
	return most
}

func shortTitle(title string) string {
	s, _, _ := strings.Cut(title, ":")
	return s
}

// writeMarkdown writes the generated report to path, followed by the notes
// of the existing file (from the notes marker on), or by a fresh notes
// section.
func writeMarkdown(path, report string) error {
	notes := defaultNotes
	old, err := os.ReadFile(path)
	switch {
	case err == nil:
		if i := strings.Index(string(old), notesMarker); i >= 0 {
			notes = string(old[i:])
		}
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	return os.WriteFile(path, []byte(strings.TrimRight(report, "\n")+"\n\n"+notes), 0o644)
}

// writeJSON saves the results, indented.
func writeJSON(path string, res *Results) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
