package master

import (
	"bytes"
	"cmp"
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/internal/masterapi"
	"github.com/yolkgo/yolk/internal/metrics"
	"github.com/yolkgo/yolk/prom"
	"github.com/yolkgo/yolk/supervisor"
)

// scrapeTimeout bounds the wait for the children's metrics in one GET /metrics.
const scrapeTimeout = 2 * time.Second

// serviceMetrics is the master's GET /metrics: every live process's metrics
// in one exposition, each sample labelled role (master, agent, worker) and,
// for a worker, slot (0 to N-1, kept across restarts and reloads, unlike the
// pid), the master's process's series (role="master"), and the service's,
// without role: the children's restarts and states, the reloads, the time
// each change took to reach every worker and the reads of the remote it cost.
// Safe for concurrent use.
type serviceMetrics struct {
	conn *bus.Conn
	live func() []processStatus
	// supervised: the master starts the children (fork mode) and counts
	// their restarts; else (external mode) restarts are the platform's.
	supervised bool
	log        *slog.Logger

	self          *prom.Registry // the master's process: labelled role="master"
	service       *prom.Registry // the service's: labelled as they are
	reloads       *prom.Vec[prom.Counter]
	changes       *prom.Counter
	convergence   *prom.Histogram
	changeFetches *prom.Histogram
	scrapeErrors  *prom.Vec[prom.Counter]

	mu        sync.Mutex
	restarts  map[target]restartCount
	scrapeSem chan struct{}
}

// A target is a child as the metrics name it.
type target struct {
	role, slot string // slot "" for the agent
}

// restartCount turns the supervisor's restarts of a slot, which start over
// at 0 when a reload (or the watchdog) replaces the slot, into a count that
// only grows. A new slot is seen by its count falling, so the master
// observes the counts every round of heartbeats (model.onRound) and before a
// reload. The limit: restarts of the old slot between its last observation
// and its replacement, or more restarts of the new slot within one round
// than the old slot had, are not counted: ChildStatus gives a slot's place,
// not which slot holds it.
type restartCount struct{ base, last int }

func newServiceMetrics(conn *bus.Conn, live func() []processStatus, supervised bool, log *slog.Logger) *serviceMetrics {
	service := prom.NewRegistry()
	s := &serviceMetrics{
		conn: conn, live: live, supervised: supervised, log: log,
		self: metrics.NewRegistry(version), service: service,
		reloads: service.CounterVec("yolk_reloads_total", "Rolling reloads of the workers, by result (ok, failed).", "result"),
		changes: service.Counter("yolk_changes_total", "Versions that reached every live worker."),
		convergence: service.Histogram("yolk_change_convergence_seconds",
			"Time from a change read from the remote to the last live worker serving it.",
			[]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}),
		changeFetches: service.Histogram("yolk_change_fetches",
			"Reads of the remote's data set, by every process, for one change (one is the goal).",
			[]float64{0, 1, 2, 3, 5, 10, 20}),
		scrapeErrors: service.CounterVec("yolk_scrape_errors_total",
			"Children whose metrics were left out of a scrape of the master: no answer in time, or text that did not parse.",
			"role", "slot"),
		restarts:  make(map[target]restartCount),
		scrapeSem: make(chan struct{}, 1),
	}
	service.Collect("yolk_processes", "Children of the master, by role and state (starting, ready, stopping, backoff).",
		prom.KindGauge, []string{"role", "state"}, s.collectProcesses)
	service.Collect("yolk_restarts_total", "Restarts of a child after it exited, by role and worker slot, across reloads.",
		prom.KindCounter, []string{"role", "slot"}, s.collectRestarts)
	return s
}

// changeComplete is the model's onComplete: a change every live worker serves.
// A change that no worker reported in turn (every arrival stale: a newer
// version came first, or none) took no time to measure, and is not observed.
func (s *serviceMetrics) changeComplete(c change) {
	s.changes.Inc()
	if slices.ContainsFunc(c.Arrivals, func(a arrival) bool { return !a.Stale }) {
		s.convergence.Observe(c.TookMs / 1000)
	}
}

// changeCounted is the model's onFetches: the reads of the remote a change
// cost are known.
func (s *serviceMetrics) changeCounted(c change) { s.changeFetches.Observe(float64(c.Fetches)) }

// reloaded counts a rolling reload that ended with err.
func (s *serviceMetrics) reloaded(err error) {
	result := "ok"
	if err != nil {
		result = "failed"
	}
	s.reloads.With(result).Inc()
}

// targets picks the children to scrape, one per role and slot: the ready
// ones only (a child not ready may not answer for its metrics yet, and a slot
// without one is left out); during a reload a worker shares its slot with
// its replacement, and the newest speaks for the slot.
func (s *serviceMetrics) targets(live []processStatus) map[target]processStatus {
	out := make(map[target]processStatus)
	for _, p := range live {
		if p.ID == "" || p.State != supervisor.StateReady {
			continue
		}
		t := target{role: p.Role}
		if p.Role == string(bus.RoleWorker) {
			t.slot = strconv.Itoa(p.Slot)
		}
		if have, ok := out[t]; !ok || p.Started.After(have.Started) {
			out[t] = p
		}
	}
	return out
}

func (t target) labels() map[string]string {
	if t.slot == "" {
		return map[string]string{"role": t.role}
	}
	return map[string]string{"role": t.role, "slot": t.slot}
}

// ServeHTTP is GET /metrics. Scrapes run one at a time: a second waits for
// the first, so that clients that ask together cost the children one
// exposition each at a time.
func (s *serviceMetrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case s.scrapeSem <- struct{}{}:
		defer func() { <-s.scrapeSem }()
	case <-r.Context().Done():
		return
	}
	var out bytes.Buffer
	s.write(r.Context(), &out)
	w.Header().Set("Content-Type", prom.ContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(out.Bytes()) // an error means the client went away
}

// write asks every target for its metrics at once, waits up to scrapeTimeout,
// and writes them merged with the master's own. A child that does not
// answer in time is left out, and counted in yolk_scrape_errors_total.
func (s *serviceMetrics) write(ctx context.Context, out *bytes.Buffer) {
	targets := s.targets(s.live())
	type answer struct {
		t    target
		text string
		err  error
	}
	answers := make(chan answer, len(targets))
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for t, p := range targets {
		wg.Go(func() {
			var a answer
			a.t = t
			msg, err := s.conn.Request(ctx, p.ID, masterapi.EventMetrics, nil)
			if err == nil {
				err = msg.Decode(&a.text)
			}
			a.err = err
			answers <- a
		})
	}
	wg.Wait()
	close(answers)
	got := make([]answer, 0, len(targets))
	for a := range answers {
		got = append(got, a)
	}
	slices.SortFunc(got, func(a, b answer) int { // the first of a family gives its HELP: the same each time
		return cmp.Or(cmp.Compare(roleOrder(a.t.role), roleOrder(b.t.role)), cmp.Compare(len(a.t.slot), len(b.t.slot)), cmp.Compare(a.t.slot, b.t.slot))
	})
	var m metrics.Merge
	for _, a := range got {
		if a.err == nil {
			a.err = m.AddText([]byte(a.text), a.t.labels())
		}
		if a.err != nil {
			s.scrapeErrors.With(a.t.role, a.t.slot).Inc()
			s.log.Debug("metrics of a child left out", "role", a.t.role, "slot", a.t.slot, "err", a.err)
		}
	}
	for _, own := range []struct {
		reg    *prom.Registry
		labels map[string]string
	}{{s.self, map[string]string{"role": "master"}}, {s.service, nil}} {
		var text bytes.Buffer
		own.reg.WriteTo(&text)
		if err := m.AddText(text.Bytes(), own.labels); err != nil {
			s.log.Warn("merge the master's metrics", "err", err)
		}
	}
	m.WriteTo(out)
}

// observeRestarts brings the restart counts up to date with live.
func (s *serviceMetrics) observeRestarts(live []processStatus) map[target]int {
	seen := make(map[target]int) // the highest count of each slot now: a reload's new slot starts at 0
	for _, p := range live {
		if p.Role != string(bus.RoleAgent) && p.Role != string(bus.RoleWorker) {
			continue
		}
		t := target{role: p.Role}
		if p.Role == string(bus.RoleWorker) {
			t.slot = strconv.Itoa(p.Slot)
		}
		seen[t] = max(seen[t], p.Restarts)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[target]int, len(seen))
	for t, n := range seen {
		c := s.restarts[t]
		if n < c.last { // a new slot: what the old one counted stays
			c.base += c.last
		}
		c.last = n
		s.restarts[t] = c
	}
	for t, c := range s.restarts {
		out[t] = c.base + c.last
	}
	return out
}

// collectProcesses gives, at each scrape, yolk_processes{role,state}: the
// children by role and state.
func (s *serviceMetrics) collectProcesses(emit func(float64, ...string)) {
	type key struct{ role, state string }
	counts := make(map[key]int)
	for _, p := range s.live() {
		counts[key{p.Role, p.State}]++
	}
	for k, n := range counts {
		emit(float64(n), k.role, k.state)
	}
}

// collectRestarts gives, at each scrape and in fork mode only,
// yolk_restarts_total{role,slot}.
func (s *serviceMetrics) collectRestarts(emit func(float64, ...string)) {
	if !s.supervised {
		return
	}
	for t, n := range s.observeRestarts(s.live()) {
		emit(float64(n), t.role, t.slot)
	}
}
