// Command ticker is a small application of a fleet: a Cluster schedule that
// runs once per tick across every host that shares a NATS cluster
// (YOLK_CLUSTER_URL), whichever hosts come and go, and that says on
// GET /runs what ran where.
//
// Each run is numbered by its tick (the number of TICKER_EVERY intervals
// since the Unix epoch, the same on every host) and carries the lease's
// fencing token, which only grows across the fleet. The run is logged, and
// if TICKER_REPORT_URL is set, POSTed there as JSON, for a test or a
// collector to check that no tick ran twice. On a single host the schedule
// runs in one worker per tick, as a Worker schedule does.
//
// GET /fleet gathers, from every worker of every host, the ticks each has
// run (SendToFleet and GatherFleet across hosts).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/yolkgo/yolk"
	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/schedule"
)

const about = `The ticker example: a Cluster schedule, tick, runs once per TICKER_EVERY
across a fleet of hosts; GET /runs lists this worker's runs, GET /fleet every
worker's of every host.`

type config struct {
	Every     time.Duration `env:"TICKER_EVERY" envDefault:"1s" help:"the tick schedule's interval"`
	ReportURL string        `env:"TICKER_REPORT_URL" help:"if set, each run is POSTed there as JSON {host,worker,tick,fence,at}"`
}

// Validate refuses an interval the schedule cannot use.
func (c *config) Validate() error {
	if c.Every < schedule.MinInterval {
		return fmt.Errorf("TICKER_EVERY=%q: want at least %s", c.Every, schedule.MinInterval)
	}
	return nil
}

// Run is one run of the tick schedule, as reported.
type Run struct {
	Host   string    `json:"host"`
	Worker string    `json:"worker"`
	Tick   uint64    `json:"tick"`
	Fence  uint64    `json:"fence"`
	At     time.Time `json:"at"`
}

type app struct {
	cfg  config
	w    *yolk.Worker
	mu   sync.Mutex
	runs []Run
}

func main() {
	a := &app{}
	yolk.Main(yolk.App{
		Name:      "ticker",
		About:     about,
		Config:    &a.cfg,
		Schedules: a.schedules,
		Worker:    a.worker,
	})
}

func (a *app) spec() schedule.Spec {
	return schedule.Spec{Name: "tick", Interval: a.cfg.Every, Type: schedule.Cluster}
}

func (a *app) schedules() []yolk.Schedule {
	return []yolk.Schedule{{Spec: a.spec(), Task: a.tick}}
}

// tick is the task: one run per tick across the fleet.
func (a *app) tick(ctx context.Context, r schedule.Run) error {
	run := Run{Host: a.w.Host(), Worker: a.w.ID(), Tick: a.spec().Tick(r.At), Fence: r.Fence, At: r.At}
	a.mu.Lock()
	a.runs = append(a.runs, run)
	if len(a.runs) > 1000 {
		a.runs = a.runs[len(a.runs)-1000:]
	}
	a.mu.Unlock()
	a.w.Log.Info("tick", "tick", run.Tick, "fence", run.Fence)
	if a.cfg.ReportURL == "" {
		return nil
	}
	body, _ := json.Marshal(run)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.cfg.ReportURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("report tick %d: %w", run.Tick, err)
	}
	resp.Body.Close()
	return nil
}

func (a *app) worker(w *yolk.Worker) error {
	a.w = w
	w.On("runs", func(context.Context, bus.Message) (any, error) { return a.list(), nil })
	mux := http.NewServeMux()
	mux.HandleFunc("GET /runs", func(rw http.ResponseWriter, r *http.Request) { writeJSON(rw, a.list()) })
	mux.HandleFunc("GET /fleet", func(rw http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 500*time.Millisecond)
		defer cancel()
		replies, err := w.GatherFleet(ctx, "runs", nil, 0)
		if err != nil {
			http.Error(rw, err.Error(), http.StatusServiceUnavailable)
			return
		}
		out := map[string][]Run{}
		for _, m := range replies {
			var runs []Run
			if err := m.Decode(&runs); err == nil {
				out[m.From] = runs
			}
		}
		writeJSON(rw, out)
	})
	w.Handle(mux)
	return nil
}

func (a *app) list() []Run {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Run{}, a.runs...)
}

func writeJSON(rw http.ResponseWriter, v any) {
	rw.Header().Set("Content-Type", "application/json")
	json.NewEncoder(rw).Encode(v)
}
