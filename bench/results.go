package main

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// The systems measured side by side.
const (
	sysYolk  = "yolk"
	sysEgg   = "egg baseline" // anchors/egg-ipc/baseline.js
	sysNATS  = "raw NATS"     // embedded nats-server, plain nats.go clients
	sysGo    = "bare Go"      // a net/http handler returning the same bytes
	sysFloor = "floor"        // a minimal HTTP/1.1 loop without net/http returning the same bytes
	sysNode  = "node cluster" // anchors/node-http/cluster-http.js
)

// Results is everything one run measured; it is saved as JSON and rendered
// as BENCHMARKS.md.
type Results struct {
	Command   string            `json:"command"`
	Date      time.Time         `json:"date"`
	Quick     bool              `json:"quick"`
	Machine   Machine           `json:"machine"`
	Took      string            `json:"took"`
	Params    map[string]string `json:"params"`
	Fanout    []FanoutResult    `json:"fanout"`
	RTT       []RTTResult       `json:"rtt"`
	Converge  []ConvergeResult  `json:"converge"`
	Fleet     *FleetResult      `json:"fleet,omitempty"`
	HTTP      []HTTPResult      `json:"http"`
	Lifecycle *LifecycleResult  `json:"lifecycle,omitempty"`
	Targets   []TargetResult    `json:"targets,omitempty"`  // the speed targets judged from rounds
	Notes     []string          `json:"notes,omitempty"`    // things worth knowing about this run
	Failures  []string          `json:"failures,omitempty"` // measurements that did not complete
}

// Machine describes where the run happened.
type Machine struct {
	CPUs       int    `json:"cpus"` // runtime.NumCPU
	OS         string `json:"os"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	Node       string `json:"node"`
	Wrk        string `json:"wrk"`
	LoadBefore string `json:"loadBefore"` // /proc/loadavg when the run began: 1, 5, 15 minutes
	LoadAfter  string `json:"loadAfter"`  // and when it ended
}

// FanoutResult is one system's fan-out figure: medians over the repetitions.
type FanoutResult struct {
	System              string  `json:"system"`
	Workers             int     `json:"workers"`
	Size                int     `json:"size"`
	N                   int     `json:"n"`
	Reps                int     `json:"reps"`
	TotalMsgsPerSec     float64 `json:"totalMsgsPerSec"`
	PerWorkerMsgsPerSec float64 `json:"perWorkerMsgsPerSec"`
	Lost                int     `json:"lost"` // over all repetitions
	// PerRound is TotalMsgsPerSec of each round, in order.
	PerRound []float64 `json:"perRound,omitempty"`
}

// RTTResult is one system's round trip: each quantile is the median over the
// repetitions.
type RTTResult struct {
	System  string    `json:"system"`
	Variant string    `json:"variant"`
	Workers int       `json:"workers"`
	Reps    int       `json:"reps"`
	Ms      Quantiles `json:"ms"`
	// PerRound is each round's quantiles, in order.
	PerRound []Quantiles `json:"perRound,omitempty"`
}

// ConvergeResult is the time from a change to every worker having it.
type ConvergeResult struct {
	System           string    `json:"system"`
	Workers          int       `json:"workers"`
	Ms               Quantiles `json:"ms"`
	FetchesPerChange float64   `json:"fetchesPerChange"`
	// By counts the workers' lastUpdateBy over the measured changes (yolk):
	// which refresh brought each change to each worker.
	By map[string]int `json:"by,omitempty"`
	// Slowest describes the slowest change (yolk).
	Slowest string `json:"slowest,omitempty"`
}

// FleetResult is refresh convergence across a fleet of hosts joined by a
// NATS cluster: the time from a change until every worker of every host has
// it, and the source's fetches per change for the whole fleet. Its embedded
// Workers is per host.
type FleetResult struct {
	Hosts int `json:"hosts"`
	Nodes int `json:"natsNodes"` // nats-server nodes of the cluster
	ConvergeResult
}

// HTTPResult is one wrk run against one system.
type HTTPResult struct {
	System    string  `json:"system"`
	Workers   int     `json:"workers"`
	RPS       float64 `json:"rps"`
	P50Ms     float64 `json:"p50Ms"`
	P99Ms     float64 `json:"p99Ms"`
	Requests  int     `json:"requests"`
	Non2xx    int     `json:"non2xx"`
	SockErrs  int     `json:"socketErrors"`
	Duration  string  `json:"duration"`            // of one round
	Rounds    int     `json:"rounds,omitempty"`    // the figures are the median round
	Processes string  `json:"processes,omitempty"` // what served it
	// PerRound is each round's figures, in order, when there were rounds.
	PerRound []HTTPRound `json:"perRound,omitempty"`
}

// HTTPRound is one round's wrk figures.
type HTTPRound struct {
	RPS   float64 `json:"rps"`
	P50Ms float64 `json:"p50Ms"`
	P99Ms float64 `json:"p99Ms"`
}

// TargetResult is a speed target judged from rounds: yolk's median and spread
// over the rounds, the peer's, and those of the ratio of each round's yolk
// figure to the same round's peer figure.
type TargetResult struct {
	Target  string `json:"target"`
	Figure  string `json:"figure"`
	Peer    string `json:"peer"`
	Yolk    Spread `json:"yolk"`
	Against Spread `json:"against"`
	Ratio   Spread `json:"ratio"`
	Verdict string `json:"verdict"` // pass, inconclusive, fail or undecided
}

// ProcRSS is one process's resident memory.
type ProcRSS struct {
	Role string  `json:"role"`
	PID  int     `json:"pid"`
	MB   float64 `json:"mb"`
}

// LifecycleResult holds the yolk-only lifecycle figures (2 workers).
type LifecycleResult struct {
	ColdStartMs []float64 `json:"coldStartMs"`
	// ReadyLoggedMs is the startup the master logs with "yolk ready": from the
	// start of its serve (after its own exec and init) until every child is ready.
	ReadyLoggedMs []float64 `json:"readyLoggedMs"`
	RestRSS       []ProcRSS `json:"restRSS"` // of the median repetition
	RestTotalMB   float64   `json:"restTotalMB"`
	LoadRSS       []ProcRSS `json:"loadRSS,omitempty"` // the largest sample under wrk
	LoadTotalMB   float64   `json:"loadTotalMB,omitempty"`
	StopMs        []float64 `json:"stopMs"`
	Reload        *Reload   `json:"reload,omitempty"`
}

// Reload is what clients saw during a rolling reload under load.
type Reload struct {
	Requests int     `json:"requests"`
	Non200   int     `json:"non200"`
	Errors   int     `json:"errors"`
	Retries  int     `json:"retries"` // requests the Go client sent again on a fresh connection by itself
	TookMs   float64 `json:"tookMs"`
	Clients  int     `json:"clients"`
	FirstErr string  `json:"firstErr,omitempty"`
}

// record is one line of a measuring process's output (a yolk agent peer, the
// raw NATS publisher): a repetition's figure, or the end of the plan.
type record struct {
	Test                string     `json:"test"` // fanout, rtt, done, error
	Variant             string     `json:"variant,omitempty"`
	Size                int        `json:"size,omitempty"`
	N                   int        `json:"n,omitempty"`
	Rep                 int        `json:"rep,omitempty"`
	TotalMsgsPerSec     float64    `json:"totalMsgsPerSec,omitempty"`
	PerWorkerMsgsPerSec float64    `json:"perWorkerMsgsPerSec,omitempty"`
	Lost                int        `json:"lost,omitempty"`
	RTT                 *Quantiles `json:"rtt,omitempty"`
	Error               string     `json:"error,omitempty"`
}

// aggregate turns one system's records into its fan-out and round-trip
// results: each figure the median of its runs, which are the rounds, in order.
func aggregate(system string, workers int, recs []record) ([]FanoutResult, []RTTResult) {
	type fanKey struct{ size, n int }
	fans := map[fanKey][]record{}
	var fanOrder []fanKey
	rtts := map[string][]Quantiles{}
	var rttOrder []string
	for _, r := range recs {
		switch r.Test {
		case "fanout":
			k := fanKey{r.Size, r.N}
			if _, ok := fans[k]; !ok {
				fanOrder = append(fanOrder, k)
			}
			fans[k] = append(fans[k], r)
		case "rtt":
			if r.RTT == nil {
				continue
			}
			if _, ok := rtts[r.Variant]; !ok {
				rttOrder = append(rttOrder, r.Variant)
			}
			rtts[r.Variant] = append(rtts[r.Variant], *r.RTT)
		}
	}
	var fo []FanoutResult
	for _, k := range fanOrder {
		rs := fans[k]
		var total, per []float64
		lost := 0
		for _, r := range rs {
			total = append(total, r.TotalMsgsPerSec)
			per = append(per, r.PerWorkerMsgsPerSec)
			lost += r.Lost
		}
		fo = append(fo, FanoutResult{System: system, Workers: workers, Size: k.size, N: k.n, Reps: len(rs),
			TotalMsgsPerSec: median(total), PerWorkerMsgsPerSec: median(per), Lost: lost, PerRound: total})
	}
	var rt []RTTResult
	for _, v := range rttOrder {
		rt = append(rt, RTTResult{System: system, Variant: v, Workers: workers, Reps: len(rtts[v]), Ms: medianQuantiles(rtts[v]), PerRound: rtts[v]})
	}
	return fo, rt
}

// parseRecords reads records from JSON lines; other lines are ignored. It
// returns done when a done record is among them, and an error for an error
// record.
func parseRecords(lines []string) (recs []record, done bool, err error) {
	for _, line := range lines {
		var r record
		if json.Unmarshal([]byte(line), &r) != nil || r.Test == "" {
			continue
		}
		switch r.Test {
		case "done":
			done = true
		case "error":
			return recs, true, fmt.Errorf("%s", r.Error)
		default:
			recs = append(recs, r)
		}
	}
	return recs, done, nil
}

// finite reports whether x is a number to show.
func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
