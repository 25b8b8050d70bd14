// Command counter is a small application on package yolk: every worker counts
// the requests it answers on GET /hit, and the agent keeps the service's
// total, GET /total, exact across rolling reloads and graceful restarts.
//
// Each worker reports its cumulative count to the agent, which acknowledges
// it: every COUNTER_REPORT_EVERY (the schedule report, run by every worker),
// and a last time when the worker stops, after its last request (a
// BeforeClose hook). The agent keeps the highest count it has seen of each
// worker life, so a report repeated or overtaken changes nothing, and the
// total is their sum. For GET /total a worker asks the agent, which first
// gathers the counts of the live workers. One worker logs the total every
// COUNTER_LOG_EVERY (the schedule log_total).
//
// A worker killed outright (SIGKILL, a crash) takes the hits it answered
// since its last report with it; a restarted agent knows the live workers'
// counts only.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/yolkgo/yolk"
	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/schedule"
)

const about = `The counter example: GET /hit counts a hit in the worker that answers,
GET /total is the service's total, kept by the agent across reloads.`

// gatherWait is how long the agent waits for the live workers' counts before
// it answers "total": Gather cannot tell when every live worker has answered.
const gatherWait = 100 * time.Millisecond

// config is the application's configuration, read by every process.
type config struct {
	ReportEvery time.Duration `env:"COUNTER_REPORT_EVERY" envDefault:"10s" help:"every worker reports its count to the agent this often"`
	LogEvery    time.Duration `env:"COUNTER_LOG_EVERY" envDefault:"30s" help:"one worker logs the service's total this often"`
}

// Validate refuses an interval the schedules cannot use, naming the variable.
func (c *config) Validate() error {
	for _, v := range []struct {
		name string
		d    time.Duration
	}{{"COUNTER_REPORT_EVERY", c.ReportEvery}, {"COUNTER_LOG_EVERY", c.LogEvery}} {
		switch {
		case v.d <= 0:
			return fmt.Errorf("%s=%q: must be positive", v.name, v.d)
		case v.d < schedule.MinInterval:
			return fmt.Errorf("%s=%q: want at least %s", v.name, v.d, schedule.MinInterval)
		}
	}
	return nil
}

// hits is a worker's cumulative count, the payload of the event "hits".
// Since (its start, in Unix nanoseconds) tells two lives of one id apart: a
// reused pid, a restarted container with a fixed YOLK_ID.
type hits struct {
	Since int64 `json:"since"`
	Hits  int64 `json:"hits"`
}

// total is the agent's answer to "total", and the body of GET /total.
type total struct {
	Total   int64 `json:"total"`
	Workers int   `json:"workers"` // the worker lives the agent has heard of
	Live    int   `json:"live"`    // the workers that answered its gather
}

// counter is the application's state in one process: a worker's count, or
// the agent's table of counts.
type counter struct {
	cfg config

	w     *yolk.Worker // a worker's
	since int64
	hits  atomic.Int64

	mu   sync.Mutex       // the agent's
	best map[string]int64 // the highest count seen per worker life, "id@since"
}

// main runs the counter as the master, the agent or a worker (see yolk.Main).
func main() {
	c := &counter{best: make(map[string]int64)}
	yolk.Main(yolk.App{About: about, Config: &c.cfg, Schedules: c.schedules, Agent: c.agent, Worker: c.worker})
}

// schedules are report, in every worker, and log_total, in one.
func (c *counter) schedules() []yolk.Schedule {
	report := func(ctx context.Context, _ schedule.Run) error { return c.report(ctx) }
	return []yolk.Schedule{
		{Spec: schedule.Spec{Name: "report", Type: schedule.All, Interval: c.cfg.ReportEvery}, Task: report},
		{Spec: schedule.Spec{Name: "log_total", Type: schedule.Worker, Interval: c.cfg.LogEvery}, Task: c.logTotal},
	}
}

// agent keeps the workers' reports and answers "total" with their sum, once
// it has gathered the live workers' counts.
func (c *counter) agent(a *yolk.Agent) error {
	if err := a.On("hits", func(_ context.Context, m bus.Message) (any, error) { return nil, c.keep(m) }); err != nil {
		return err
	}
	return a.On("total", func(ctx context.Context, _ bus.Message) (any, error) {
		ctx, cancel := context.WithTimeout(ctx, gatherWait)
		defer cancel()
		replies, _ := a.Gather(ctx, "hits", nil, 0) // none live: the sum stands
		live := 0
		for _, m := range replies {
			if m.Err == nil && c.keep(m) == nil {
				live++
			}
		}
		t := c.sum()
		t.Live = live
		return t, nil
	})
}

// keep records the count m carries if it is the highest of its worker life.
func (c *counter) keep(m bus.Message) error {
	var n hits
	if err := m.Decode(&n); err != nil {
		return fmt.Errorf("hits from %s: %w", m.From, err)
	}
	life := m.From + "@" + strconv.FormatInt(n.Since, 10)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.best[life] = max(c.best[life], n.Hits)
	return nil
}

// sum is the total of the highest counts.
func (c *counter) sum() total {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := total{Workers: len(c.best)}
	for _, n := range c.best {
		t.Total += n
	}
	return t
}

// worker counts the hits it answers, tells its count to the agent when asked
// and when it stops, and serves /hit and /total.
func (c *counter) worker(w *yolk.Worker) error {
	c.w, c.since = w, time.Now().UnixNano()
	if err := w.On("hits", func(context.Context, bus.Message) (any, error) { return c.count(), nil }); err != nil {
		return err
	}
	w.BeforeClose(c.report) // after the last request: the final count
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hit", func(rw http.ResponseWriter, r *http.Request) {
		writeJSON(rw, struct {
			Worker string `json:"worker"`
			Hits   int64  `json:"hits"`
		}{w.ID(), c.hits.Add(1)})
	})
	mux.HandleFunc("GET /total", func(rw http.ResponseWriter, r *http.Request) {
		t, err := c.total(r.Context())
		if err != nil {
			http.Error(rw, err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeJSON(rw, t)
	})
	w.Handle(mux)
	return nil
}

// count is this worker's count so far.
func (c *counter) count() hits { return hits{Since: c.since, Hits: c.hits.Load()} }

// report sends this worker's count to the agent, retrying until the agent
// acknowledges it or ctx ends.
func (c *counter) report(ctx context.Context) error {
	return c.w.SendToAgent(ctx, "hits", c.count())
}

// total asks the agent for the service's total.
func (c *counter) total(ctx context.Context) (total, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var t total
	m, err := c.w.RequestAgent(ctx, "total", nil)
	if err != nil {
		return t, fmt.Errorf("ask the agent: %w", err)
	}
	return t, m.Decode(&t)
}

// logTotal logs the service's total.
func (c *counter) logTotal(ctx context.Context, _ schedule.Run) error {
	t, err := c.total(ctx)
	if err != nil {
		return err
	}
	c.w.Log.Info("total", "total", t.Total, "workers", t.Workers, "live", t.Live)
	return nil
}

// writeJSON writes v as a JSON reply.
func writeJSON(rw http.ResponseWriter, v any) {
	rw.Header().Set("Content-Type", "application/json")
	json.NewEncoder(rw).Encode(v)
}
