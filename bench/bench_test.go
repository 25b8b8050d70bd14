package main

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestQuantilesOf(t *testing.T) {
	xs := make([]float64, 0, 100)
	for i := 100; i >= 1; i-- { // unsorted on purpose
		xs = append(xs, float64(i))
	}
	got := quantilesOf(xs)
	// baseline.js: s[min(n-1, floor(q*n))] of the sorted sample
	want := Quantiles{N: 100, P50: 51, P90: 91, P99: 100, Max: 100}
	if got != want {
		t.Errorf("quantilesOf(1..100) = %+v, want %+v", got, want)
	}
	if xs[0] != 100 {
		t.Errorf("quantilesOf sorted its argument in place")
	}
	if got := quantilesOf(nil); got != (Quantiles{}) {
		t.Errorf("quantilesOf(nil) = %+v, want zeros", got)
	}
	if got := quantilesOf([]float64{7}); got != (Quantiles{N: 1, P50: 7, P90: 7, P99: 7, Max: 7}) {
		t.Errorf("quantilesOf([7]) = %+v", got)
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
	got := medianQuantiles([]Quantiles{{N: 10, P50: 1, P99: 9}, {N: 10, P50: 3, P99: 5}, {N: 10, P50: 2, P99: 7}})
	if got.N != 30 || got.P50 != 2 || got.P99 != 7 {
		t.Errorf("medianQuantiles = %+v, want N 30, P50 2, P99 7", got)
	}
}

// baselineOut is what baseline.js prints (2 workers, 2 repetitions).
const baselineOut = `{"baseline":"egg-ipc","workers":2,"test":"fanout","n":100000,"size":128,"totalMsgsPerSec":42007.9,"perWorkerMsgsPerSec":21003.9}
{"baseline":"egg-ipc","workers":2,"test":"fanout","n":100000,"size":128,"totalMsgsPerSec":56127.0,"perWorkerMsgsPerSec":28063.5}
{"baseline":"egg-ipc","workers":2,"test":"rtt","pid":10415,"n":10000,"p50":0.213113,"p90":1.774772,"p99":9.370206,"max":171.069347}
{"baseline":"egg-ipc","workers":2,"test":"rtt","pid":10415,"n":10000,"p50":0.220035,"p90":1.497317,"p99":7.389707,"max":175.422237}
some stray line
{"baseline":"egg-ipc","workers":2,"test":"push","n":200,"p50":4.965047,"p90":16.468292,"p99":61.481111,"max":65.159428,"fetchesPerChange":2}
{"baseline":"egg-ipc","workers":2,"test":"push","n":200,"p50":6.720202,"p90":26.218015,"p99":91.483433,"max":101.804896,"fetchesPerChange":2}
`

func TestParseBaseline(t *testing.T) {
	got, err := parseBaseline(baselineOut, 0)
	if err != nil {
		t.Fatalf("parseBaseline: %v", err)
	}
	if len(got.Fanout) != 1 || len(got.RTT) != 1 || len(got.Converge) != 1 {
		t.Fatalf("parseBaseline = %+v, want one figure per test", got)
	}
	f := got.Fanout[0]
	if f.System != sysEgg || f.Workers != 2 || f.Size != 128 || f.N != 100000 || f.Reps != 2 || !near(f.TotalMsgsPerSec, (42007.9+56127.0)/2) {
		t.Errorf("fan-out = %+v", f)
	}
	r := got.RTT[0]
	if r.Reps != 2 || !near(r.Ms.P50, (0.213113+0.220035)/2) || !near(r.Ms.P99, (9.370206+7.389707)/2) || r.Ms.N != 20000 {
		t.Errorf("rtt = %+v", r)
	}
	c := got.Converge[0]
	if c.FetchesPerChange != 2 || !near(c.Ms.P99, (61.481111+91.483433)/2) {
		t.Errorf("push = %+v", c)
	}
	warm, err := parseBaseline(baselineOut, 1)
	if err != nil {
		t.Fatalf("parseBaseline(warm 1): %v", err)
	}
	if f := warm.Fanout[0]; f.Reps != 1 || f.TotalMsgsPerSec != 56127.0 {
		t.Errorf("parseBaseline(warm 1) fan-out = %+v, want the second repetition only", f)
	}
	if r := warm.RTT[0]; r.Reps != 1 || r.Ms.P50 != 0.220035 {
		t.Errorf("parseBaseline(warm 1) rtt = %+v, want the second repetition only", r)
	}
	if c := warm.Converge[0]; !near(c.Ms.P99, (61.481111+91.483433)/2) {
		t.Errorf("parseBaseline(warm 1) push = %+v, want both repetitions (pushes warm up nothing)", c)
	}
	if recs := warm.records(); len(recs) != 2 || recs[0].Test != "fanout" || recs[0].TotalMsgsPerSec != 56127.0 || recs[1].Test != "rtt" || recs[1].RTT.P50 != 0.220035 {
		t.Errorf("records() = %+v, want the fan-out and the round trip as records", recs)
	}
	if _, err := parseBaseline("node: not found\n", 0); err == nil {
		t.Errorf("parseBaseline(no JSON lines) = nil error, want one")
	}
	if _, err := parseBaseline(`{"baseline":"egg-ipc",`+"\n", 0); err == nil {
		t.Errorf("parseBaseline(broken JSON) = nil error, want one")
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6*math.Max(1, math.Abs(b)) }

const wrkOut = `Running 10s test @ http://127.0.0.1:7101/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.05ms    1.10ms  30.01ms   90.00%
    Req/Sec    32.50k     3.21k   40.11k    70.00%
  Latency Distribution
     50%  726.00us
     75%    1.21ms
     90%    2.11ms
     99%    1.20s
  646700 requests in 10.00s, 88.81MB read
  Socket errors: connect 1, read 2, write 0, timeout 4
  Non-2xx or 3xx responses: 3
Requests/sec:  64657.36
Transfer/sec:      8.88MB
`

func TestParseWrk(t *testing.T) {
	got, err := parseWrk(wrkOut)
	if err != nil {
		t.Fatalf("parseWrk: %v", err)
	}
	want := HTTPResult{RPS: 64657.36, P50Ms: 0.726, P99Ms: 1200, Requests: 646700, Non2xx: 3, SockErrs: 7}
	if !near(got.RPS, want.RPS) || !near(got.P50Ms, want.P50Ms) || !near(got.P99Ms, want.P99Ms) ||
		got.Requests != want.Requests || got.Non2xx != want.Non2xx || got.SockErrs != want.SockErrs {
		t.Errorf("parseWrk = %+v, want %+v", got, want)
	}
	clean := strings.NewReplacer("  Socket errors: connect 1, read 2, write 0, timeout 4\n", "", "  Non-2xx or 3xx responses: 3\n", "").Replace(wrkOut)
	if got, err := parseWrk(clean); err != nil || got.Non2xx != 0 || got.SockErrs != 0 {
		t.Errorf("parseWrk(no errors) = %+v, %v", got, err)
	}
	noLatency := strings.Replace(wrkOut, "     50%  726.00us\n", "", 1)
	if _, err := parseWrk(noLatency); err == nil {
		t.Errorf("parseWrk(without p50) = nil error, want one")
	}
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"); err == nil {
		t.Errorf("parseWrk(connection refused) = nil error, want one")
	}
}

func TestParseVmRSS(t *testing.T) {
	status := []byte("Name:\tworker\nVmPeak:\t 1000 kB\nVmRSS:\t   12000 kB\nThreads:\t5\n")
	got, err := parseVmRSS(status)
	if err != nil || !near(got, 12000*1024/1e6) {
		t.Errorf("parseVmRSS = %v, %v, want %v", got, err, 12000*1024/1e6)
	}
	if _, err := parseVmRSS([]byte("Name:\tzombie\n")); err == nil {
		t.Errorf("parseVmRSS(no VmRSS) = nil error, want one")
	}
}

func TestParseRecords(t *testing.T) {
	lines := []string{
		`{"level":"INFO","msg":"not a record"}`,
		`{"test":"fanout","size":128,"n":10,"rep":1,"totalMsgsPerSec":100,"perWorkerMsgsPerSec":50}`,
		`{"test":"fanout","size":128,"n":10,"rep":2,"totalMsgsPerSec":300,"perWorkerMsgsPerSec":150,"lost":2}`,
		`{"test":"fanout","size":128,"n":10,"rep":3,"totalMsgsPerSec":200,"perWorkerMsgsPerSec":100}`,
		`{"test":"rtt","variant":"request","rep":1,"n":5,"rtt":{"n":5,"p50":0.1,"p90":0.2,"p99":0.3,"max":0.4}}`,
		``,
	}
	recs, done, err := parseRecords(lines)
	if err != nil || done || len(recs) != 4 {
		t.Fatalf("parseRecords = %d records, done %v, %v; want 4, false, nil", len(recs), done, err)
	}
	fo, rt := aggregate(sysYolk, 2, recs)
	if len(fo) != 1 || fo[0].TotalMsgsPerSec != 200 || fo[0].PerWorkerMsgsPerSec != 100 || fo[0].Lost != 2 || fo[0].Reps != 3 {
		t.Errorf("aggregate fan-out = %+v", fo)
	}
	if len(rt) != 1 || rt[0].Variant != rttRequest || rt[0].Ms.P99 != 0.3 {
		t.Errorf("aggregate rtt = %+v", rt)
	}
	if _, done, _ := parseRecords(append(lines, `{"test":"done"}`)); !done {
		t.Errorf("parseRecords(... done) = not done")
	}
	if _, done, err := parseRecords(append(lines, `{"test":"error","error":"boom"}`)); !done || err == nil || err.Error() != "boom" {
		t.Errorf("parseRecords(... error) = done %v, %v; want true, boom", done, err)
	}
}

func TestFanTracker(t *testing.T) {
	tr := newFanTracker()
	tr.reset(1)
	tr.onProgress("a", fanProgress{Run: 1, Count: 100})
	if got := tr.minProgress(2); got != 0 {
		t.Errorf("minProgress with one of two reporting = %d, want 0", got)
	}
	tr.onProgress("b", fanProgress{Run: 1, Count: 50})
	tr.onProgress("a", fanProgress{Run: 0, Count: 500}) // a stale run
	tr.onProgress("a", fanProgress{Run: 1, Count: 80})  // late, smaller
	if got := tr.minProgress(2); got != 50 {
		t.Errorf("minProgress = %d, want 50", got)
	}
	tr.onAck("b", fanAck{Run: 1, Count: 9})
	tr.onAck("a", fanAck{Run: 2, Count: 9})
	if acks := tr.ackList(); len(acks) != 1 || acks[0].From != "b" {
		t.Errorf("ackList = %+v, want b's only", acks)
	}
}

func TestFanCounter(t *testing.T) {
	var reports []fanProgress
	c := &fanCounter{report: func(p fanProgress) { reports = append(reports, p) }}
	c.begin(fanBegin{Run: 3, N: 10, ProgressEvery: 4})
	for range 10 {
		c.msg()
	}
	a := c.ack(3)
	if a.Count != 10 || a.Run != 3 || a.Last == 0 {
		t.Errorf("ack = %+v", a)
	}
	if len(reports) != 2 || reports[1].Count != 8 {
		t.Errorf("reports = %+v, want counts 4 and 8", reports)
	}
	if got := jsonString(128); len(got) != 128 || got[0] != '"' || got[127] != '"' {
		t.Errorf("jsonString(128) = %d bytes %q...", len(got), got[:4])
	}
}

// httpRounds zips requests/s and p99s into rounds.
func httpRounds(rps, p99 []float64) []HTTPRound {
	out := make([]HTTPRound, len(rps))
	for i := range rps {
		out[i] = HTTPRound{RPS: rps[i], P99Ms: p99[i]}
	}
	return out
}

// sampleResults is a run with every section, and targets that pass, fail and
// are inconclusive.
func sampleResults() *Results {
	return &Results{
		Command: "make bench (go run ./bench -out BENCHMARKS.md)",
		Date:    time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC),
		Took:    "3m0s",
		Machine: Machine{CPUs: 2, OS: "linux/amd64", Go: "go1.26", Node: "v20", Wrk: "4.1.0", LoadBefore: "1.00 1.00 1.00"},
		Params:  map[string]string{"rtt": "10000 trips", "changes": "200", "rounds": "5"},
		Fanout: []FanoutResult{
			{System: sysYolk, Workers: 2, Size: 128, TotalMsgsPerSec: 1.5e6, PerWorkerMsgsPerSec: 7.5e5, PerRound: []float64{1.4e6, 1.5e6, 1.55e6, 1.45e6, 1.6e6}},
			{System: sysEgg, Workers: 2, Size: 128, TotalMsgsPerSec: 2.5e5, PerWorkerMsgsPerSec: 1.25e5, PerRound: []float64{2.4e5, 2.5e5, 2.6e5, 2.45e5, 2.55e5}},
			{System: sysNATS, Workers: 2, Size: 128, TotalMsgsPerSec: 2e6, PerWorkerMsgsPerSec: 1e6, PerRound: []float64{1.9e6, 2e6, 2.1e6, 1.7e6, 2.2e6}},
			{System: sysYolk, Workers: 2, Size: 4096, TotalMsgsPerSec: 3e5, PerWorkerMsgsPerSec: 1.5e5, Lost: 4},
		},
		RTT: []RTTResult{
			{System: sysYolk, Variant: rttRequest, Workers: 2, Ms: Quantiles{N: 1, P50: 0.1, P99: 0.2, Max: 1},
				PerRound: []Quantiles{{P50: 0.1, P99: 0.2}, {P50: 0.09, P99: 0.19}, {P50: 0.11, P99: 0.21}, {P50: 0.095, P99: 0.2}, {P50: 0.105, P99: 0.2}}},
			{System: sysEgg, Variant: "x", Workers: 2, Ms: Quantiles{N: 1, P50: 0.08, P99: 0.3, Max: 2},
				PerRound: []Quantiles{{P50: 0.08, P99: 0.3}, {P50: 0.08, P99: 0.3}, {P50: 0.08, P99: 0.3}, {P50: 0.08, P99: 0.3}, {P50: 0.08, P99: 0.3}}},
			{System: sysNATS, Variant: rttRequest, Workers: 2, Ms: Quantiles{N: 1, P50: 0.095, P99: 0.25, Max: 2},
				PerRound: []Quantiles{{P50: 0.09}, {P50: 0.095}, {P50: 0.1}, {P50: 0.085}, {P50: 0.105}}},
		},
		Converge: []ConvergeResult{
			{System: sysYolk, Workers: 2, Ms: Quantiles{N: 1, P50: 1, P99: 2, Max: 3}, FetchesPerChange: 1, By: map[string]int{"pull": 2, "push": 398}},
			{System: sysEgg, Workers: 2, Ms: Quantiles{N: 1, P50: 1, P99: 4, Max: 5}, FetchesPerChange: 2},
		},
		Fleet: &FleetResult{Hosts: 3, Nodes: 3, ConvergeResult: ConvergeResult{System: sysYolk, Workers: 2,
			Ms: Quantiles{N: 1, P50: 4, P99: 8, Max: 9}, FetchesPerChange: 1, By: map[string]int{"push": 1200}}},
		HTTP: []HTTPResult{
			{System: sysYolk, Workers: 2, RPS: 70000, P50Ms: 0.5, P99Ms: 2, PerRound: httpRounds([]float64{69000, 70000, 71000}, []float64{1.8, 2, 2.2})},
			{System: sysGo, Workers: 2, RPS: 75000, P50Ms: 0.5, P99Ms: 2, PerRound: httpRounds([]float64{74000, 75000, 78000}, []float64{2, 2, 2})},
			{System: sysNode, Workers: 2, RPS: 60000, P50Ms: 0.8, P99Ms: 5, PerRound: httpRounds([]float64{59000, 60000, 61000}, []float64{4.6, 5, 5.4})},
			{System: sysFloor, Workers: 2, RPS: 120000, P50Ms: 0.3, P99Ms: 4, Processes: "1 process"},
		},
		Lifecycle: &LifecycleResult{
			ColdStartMs: []float64{50, 60, 70}, StopMs: []float64{40},
			RestRSS: []ProcRSS{{Role: "master", MB: 20}}, RestTotalMB: 45,
			Reload: &Reload{Requests: 100, Clients: 4},
		},
		Failures: []string{"something broke"},
	}
}

func TestRenderReport(t *testing.T) {
	got := renderReport(sampleResults())
	for _, want := range []string{
		"# yolk benchmarks",
		"`make bench (go run ./bench -out BENCHMARKS.md)`", // as given in Command
		"2 CPUs (runtime.NumCPU)",
		"| 2 workers, 128 B, total | 1.50M/s (750k/s per worker) | 250k/s (125k/s per worker) | 2.00M/s (1.00M/s per worker) | 6.00× | 0.75× | ≥ 5× baseline: pass; ≥ 0.8× raw NATS, 0 lost: **FAIL** |",
		"| 2 workers, 4 KiB, total | 300k/s (150k/s per worker), **4 lost** | — | — | — | — | 0 lost: **FAIL** |",
		"| `RequestAgent` (request/reply) p50 | 0.100 ms | 0.080 ms | 0.095 ms | 1.25× | 1.05× | ≤ baseline: **FAIL**; ≤ 1.15× raw NATS: inconclusive |",
		"| `RequestAgent` (request/reply) p99 | 0.200 ms | 0.300 ms | 0.250 ms | 0.67× | 0.80× | ≤ baseline: pass |",
		// The targets table: medians, IQRs, the per-round ratio, the verdict.
		"| ≥ 5× baseline | Fan-out: 2 workers, 128 B, total | 1.50M/s (IQR 1.45M/s–1.55M/s) | egg baseline 250k/s (IQR 245k/s–255k/s) | 5.96× (IQR 5.92×–6.00×) | pass |",
		"| ≥ 0.8× raw NATS, 0 lost | Fan-out: 2 workers, 128 B, total | 1.50M/s (IQR 1.45M/s–1.55M/s) | raw NATS 2.00M/s (IQR 1.90M/s–2.10M/s) | 0.74× (IQR 0.74×–0.75×) | **FAIL** |",
		"| ≤ 1.15× raw NATS | Round trip: `RequestAgent` (request/reply) p50 | 0.100 ms (IQR 0.095 ms–0.105 ms) | raw NATS 0.095 ms (IQR 0.090 ms–0.100 ms) | 1.10× (IQR 1.00×–1.11×) | inconclusive |",
		"| ≥ 1.2× node | HTTP: 2 workers, requests/s | 70000 (IQR 69500–70500) | node cluster 60000 (IQR 59500–60500) | 1.17× (IQR 1.17×–1.17×) | **FAIL** |",
		"| ≥ 0.9× bare Go | HTTP: 2 workers, requests/s | 70000 (IQR 69500–70500) | bare Go 75000 (IQR 74500–76500) | 0.93× (IQR 0.92×–0.93×) | pass |",
		"| ≤ node's | HTTP: 2 workers, p99 | 2.00 ms (IQR 1.90 ms–2.10 ms) | node cluster 5.00 ms (IQR 4.80 ms–5.20 ms) | 0.40× (IQR 0.40×–0.40×) | pass |",
		"| < 100 ms | Lifecycle: cold start to first 200, median of 3 | 60.0 ms (50.0 ms–70.0 ms) | — | — | pass |",
		"- **inconclusive**: the medians meet the target but the IQRs overlap against it",
		"| 2 workers, remote fetches per change | 1.00 | 2.00 |",
		"| 2 workers, refresh that brought each change to each worker | push 398, pull 2 |",
		"## Fleet convergence: a change at the source until every worker of every host has it (3 hosts × 2 workers)\n\n| figure | fleet | one host (2 workers) | fleet / one host (2 workers) | target |\n| --- | --- | --- | --- | --- |\n",
		"| change to every worker, p50 | 4.00 ms | 1.00 ms | 4.00× |  |",
		"| change to every worker, p99 | 8.00 ms | 2.00 ms | 4.00× |  |",
		"| remote fetches per change | 1.00 | 1.00 | 1.00× | 1: pass |",
		"| refresh that brought each change to each worker | push 1200 | push 398, pull 2 | — |  |",
		"| 1 | Fleet convergence: remote fetches per change | 1.00 | — | — | pass |",
		"| 2 workers, requests/s | 70000 | 60000 | 75000 | 1.17× | 0.93× | ≥ 1.2× node: **FAIL**; ≥ 0.9× bare Go: pass |",
		"| 2 workers, p99 | 2.00 ms | 5.00 ms | 2.00 ms | 0.40× | 1.00× | ≤ node's: pass; ≤ ½ node's: pass |",
		"made 120000 requests/s, p50 0.300 ms, p99 4.00 ms. Node's p99 is 1.25× the floor's: a p99 at most half of node's needs a server 1.60× faster in the tail",
		"| cold start to first 200, median of 3 | 60.0 ms (50.0 ms–70.0 ms) |",
		"< 100 ms: pass",
		"failed requests during a rolling reload, 4 clients | 0 of 100",
		"## Measurements that failed\n\n- something broke",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("renderReport lacks %q; got:\n%s", want, got)
		}
	}
	if strings.Contains(got, notesMarker) {
		t.Errorf("renderReport contains the notes marker: writeMarkdown adds it")
	}
	busy := sampleResults()
	busy.Machine.LoadBefore, busy.Machine.LoadAfter = "1.00 2.00 3.00", "7.50 4.00 3.00"
	if got := renderReport(busy); !strings.Contains(got, "a load average of 7.5 on 2 CPUs") {
		t.Errorf("renderReport(loaded machine) has no warning; got:\n%s", got)
	}
	if strings.Contains(got, "Other work competed") {
		t.Errorf("renderReport(quiet machine) warns of load")
	}
	empty := renderReport(&Results{})
	if strings.Contains(empty, "## Round trip") || strings.Contains(empty, "## Fan-out") || strings.Contains(empty, "## Fleet") {
		t.Errorf("renderReport(no results) renders empty tables:\n%s", empty)
	}
}

func TestWriteMarkdownKeepsNotes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	if err := writeMarkdown(path, "# first\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if got := string(b); got != "# first\n\n"+defaultNotes {
		t.Errorf("new file = %q, want the report and the default notes", got)
	}
	notes := notesMarker + "\n## What bounds each figure\n\nThe lead's words.\n"
	if err := os.WriteFile(path, []byte("# old report\n\n"+notes), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeMarkdown(path, "# second\n\n\n"); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	if got, want := string(b), "# second\n\n"+notes; got != want {
		t.Errorf("regenerated file = %q, want %q", got, want)
	}
}

func TestWriteJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.json")
	if err := writeJSON(path, sampleResults()); err != nil {
		t.Fatalf("writeJSON: %v", err)
	}
}

func TestMedianRounds(t *testing.T) {
	got := medianRounds([]HTTPResult{
		{System: sysYolk, RPS: 100, P50Ms: 1, P99Ms: 9, Requests: 10, Non2xx: 1},
		{System: sysGo, RPS: 50, P50Ms: 2, P99Ms: 4, Requests: 5},
		{System: sysYolk, RPS: 300, P50Ms: 3, P99Ms: 5, Requests: 30, SockErrs: 2},
		{System: sysYolk, RPS: 200, P50Ms: 2, P99Ms: 7, Requests: 20},
	})
	want := []HTTPResult{
		{System: sysYolk, RPS: 200, P50Ms: 2, P99Ms: 7, Requests: 60, Non2xx: 1, SockErrs: 2, Rounds: 3,
			PerRound: []HTTPRound{{100, 1, 9}, {300, 3, 5}, {200, 2, 7}}},
		{System: sysGo, RPS: 50, P50Ms: 2, P99Ms: 4, Requests: 5, Rounds: 1, PerRound: []HTTPRound{{50, 2, 4}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("medianRounds = %+v, want %+v", got, want)
	}
}

func TestFleetTable(t *testing.T) {
	res := &Results{Fleet: &FleetResult{Hosts: 3, Nodes: 3, ConvergeResult: ConvergeResult{System: sysYolk, Workers: 2,
		Ms: Quantiles{N: 1, P50: 4, P99: 8, Max: 9}, FetchesPerChange: 1.5}}}
	var b strings.Builder
	fleetTable(res).render(&b)
	for _, want := range []string{
		"| change to every worker, p50 | 4.00 ms | — | — |  |", // no one-host figure: the converge section did not run
		"| remote fetches per change | 1.50 | — | — | 1: **FAIL** |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("fleetTable(1.5 fetches per change, no one host) lacks %q; got:\n%s", want, b.String())
		}
	}
}
