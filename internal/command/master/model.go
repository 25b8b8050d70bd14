package master

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/internal/masterapi"
	"github.com/yolkgo/yolk/internal/procstat"
	"github.com/yolkgo/yolk/supervisor"
)

// model is the master's picture of the service, which `master status`, the
// status page and the watchdog all read: the children's reports of what they
// serve, their heartbeats, the timeline of the last changes and the
// messenger's rates. The processes themselves come from live (the supervisor,
// or external mode's members). Safe for concurrent use.
type model struct {
	live func() []processStatus // the children, without what the model adds

	mu       sync.Mutex
	reports  map[string]report    // the last report of each child, by id
	beats    map[string]beat      // the last heartbeat of each child, by id
	timeline []change             // the last timelineLen changes, oldest first
	sent     []sentSample         // the children's messenger calls per round of heartbeats, oldest first
	calls    map[string]uint64    // the children's messenger calls since the last sample, by verb
	self     beat                 // the master's own usage
	plans    []masterapi.Planned  // the agent's schedules, from its last heartbeat
	runs     map[string]workerRun // the latest run of each schedule in any worker, by name
	subs     map[chan struct{}]struct{}

	// onComplete, if set, is called (without the lock) with each change once
	// every worker serves it.
	onComplete func(change)
	// onFetches, if set, is called (without the lock) with a change once its
	// Fetches are known.
	onFetches func(change)
	// onRound, if set, is called (without the lock) with the live children at
	// the end of each round of heartbeats.
	onRound func([]processStatus)
}

type report struct {
	st masterapi.State
	at time.Time
}

type beat struct {
	hb     masterapi.Heartbeat
	at     time.Time
	cpuPct float64
}

// A change is a version of what the service serves, and its way to the workers.
type change struct {
	Version string `json:"version"`
	By      string `json:"by"`
	// At is when the change was read from the remote: the earliest UpdatedAt
	// of its reports (the agent's, which reads it), or when the master first
	// heard of it if that is earlier.
	At time.Time `json:"at"`
	// Arrivals are when each worker reported it, after At.
	Arrivals []arrival `json:"arrivals"`
	// Complete: every worker alive serves it or a newer one; Took is then the
	// time to the last of them.
	Complete bool    `json:"complete"`
	TookMs   float64 `json:"tookMs"`
	// Fetches are the reads of the remote between the previous change and this one.
	Fetches uint64 `json:"fetches"`

	fetchMark uint64 // the children's fetch total when this change was first reported with one
}

// clone is c with arrivals of its own: the model updates its own in place
// (their times move when an earlier report of the change comes), under its
// lock, while a copy is read without it (the view's encoding, the hooks).
func (c change) clone() change {
	c.Arrivals = slices.Clone(c.Arrivals)
	return c
}

// took is the time from the change to the last worker that reported it in turn.
func (c *change) took() float64 {
	var t float64
	for _, a := range c.Arrivals {
		if !a.Stale {
			t = max(t, a.Ms)
		}
	}
	return t
}

type arrival struct {
	ID    string    `json:"id"`
	Slot  int       `json:"slot"`
	At    time.Time `json:"-"`
	Ms    float64   `json:"ms"`              // after the change's At
	Stale bool      `json:"stale,omitempty"` // a newer version had come already
}

// workerRun is a schedule's run as a worker reported it.
type workerRun struct {
	masterapi.RunResult
	worker string
}

// scheduleStatus is a schedule on the status page: the agent's timers and the
// last run a worker reported.
type scheduleStatus struct {
	masterapi.Planned
	// Of the last run a worker reported (maybe an earlier one than Seq):
	RunSeq     uint64  `json:"runSeq,omitempty"`
	Outcome    string  `json:"outcome,omitempty"` // running, ok, error, timeout, canceled
	Err        string  `json:"err,omitempty"`
	DurationMs float64 `json:"durationMs,omitempty"`
	Worker     string  `json:"worker,omitempty"`
}

// A sentSample is the messenger calls the children made, by verb, between
// the sample before and at.
type sentSample struct {
	at    time.Time
	calls map[string]uint64
}

const (
	heartbeatEvery = time.Second
	timelineLen    = 30
	maxRuns        = 64 // schedules whose last run the model keeps
	rateWindow     = 10 * time.Second
)

func newModel(live func() []processStatus) *model {
	return &model{
		live:    live,
		reports: make(map[string]report),
		beats:   make(map[string]beat),
		runs:    make(map[string]workerRun),
		calls:   make(map[string]uint64),
		subs:    make(map[chan struct{}]struct{}),
	}
}

// handleState is the handler of masterapi.EventState, a child's report of what it serves.
func (m *model) handleState(_ context.Context, msg bus.Message) (any, error) {
	var st masterapi.State
	if err := msg.Decode(&st); err != nil {
		return nil, fmt.Errorf("state from %s: %w", msg.From, err)
	}
	if err := st.Check(); err != nil {
		return nil, fmt.Errorf("state from %s: %w", msg.From, err)
	}
	m.report(msg.From, msg.Role, st, time.Now())
	return nil, nil
}

// report records a child's report at now, and its place in the timeline.
func (m *model) report(id string, role bus.Role, st masterapi.State, now time.Time) {
	live := m.live()
	m.mu.Lock()
	m.reports[id] = report{st: st, at: now}
	i := m.changeOf(st, now)
	c := &m.timeline[i]
	if at := st.UpdatedAt; !at.IsZero() && at.Before(c.At) {
		c.At = at
		for j := range c.Arrivals {
			c.Arrivals[j].Ms = ms(c.Arrivals[j].At.Sub(at))
		}
		if c.Complete {
			c.TookMs = c.took()
		}
	}
	var counted *change
	if st.Fetches > 0 && c.fetchMark == 0 {
		c.fetchMark = m.fetchTotal()
		if i == 0 {
			c.Fetches = c.fetchMark // the first change the master saw
			counted = new(c.clone())
		} else if prev := m.timeline[i-1].fetchMark; prev > 0 && prev <= c.fetchMark {
			// else unknown: the total falls when a process that had fetched
			// leaves, or the agent restarted and counts anew
			c.Fetches = c.fetchMark - prev
			counted = new(c.clone())
		}
	}
	if role == bus.RoleWorker && !c.Complete { // after that, a worker catches up (a restart): no news of the change
		slot := -1
		for _, p := range live {
			if p.ID == id {
				slot = p.Slot
			}
		}
		c.Arrivals = append(c.Arrivals, arrival{ID: id, Slot: slot, At: now, Ms: ms(now.Sub(c.At)), Stale: i < len(m.timeline)-1})
	}
	done := m.complete(live)
	m.mu.Unlock()
	if m.onFetches != nil && counted != nil {
		m.onFetches(*counted)
	}
	if m.onComplete != nil {
		for _, c := range done {
			m.onComplete(c)
		}
	}
	m.changed()
}

// changeOf returns the index of st's version in the timeline, adding it if new.
func (m *model) changeOf(st masterapi.State, now time.Time) int {
	for i := len(m.timeline) - 1; i >= 0; i-- {
		if m.timeline[i].Version == st.Version {
			return i
		}
	}
	at := st.UpdatedAt
	if at.IsZero() || at.After(now) {
		at = now
	}
	m.timeline = append(m.timeline, change{Version: st.Version, By: st.By, At: at})
	if len(m.timeline) > timelineLen {
		m.timeline = slices.Delete(m.timeline, 0, len(m.timeline)-timelineLen)
	}
	return len(m.timeline) - 1
}

// complete marks the changes every live worker now serves (or has passed),
// and returns those newly complete.
func (m *model) complete(live []processStatus) []change {
	// where each live worker is in the timeline: the index of its version
	pos := make(map[string]int)
	for _, p := range live {
		if p.Role != string(bus.RoleWorker) {
			continue
		}
		pos[p.ID] = -1
		if r, ok := m.reports[p.ID]; ok {
			for i := len(m.timeline) - 1; i >= 0; i-- {
				if m.timeline[i].Version == r.st.Version {
					pos[p.ID] = i
					break
				}
			}
		}
	}
	if len(pos) == 0 {
		return nil
	}
	var done []change
	for i := range m.timeline {
		c := &m.timeline[i]
		if c.Complete {
			continue
		}
		all := true
		for _, at := range pos {
			all = all && at >= i
		}
		if !all {
			continue
		}
		c.Complete, c.TookMs = true, c.took()
		done = append(done, c.clone())
	}
	return done
}

// fetchTotal is the children's reads of the remote so far, as last reported.
func (m *model) fetchTotal() uint64 {
	var n uint64
	for _, r := range m.reports {
		n += r.st.Fetches
	}
	return n
}

// beat records a child's heartbeat at now, unless hb fails its Check: then
// the child keeps its last good heartbeat, and beat returns why. Only the
// agent's heartbeat sets the schedules, and only a worker's their last runs.
func (m *model) beat(id string, role bus.Role, hb masterapi.Heartbeat, now time.Time) error {
	if err := hb.Check(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b := beat{hb: hb, at: now}
	prev, ok := m.beats[id]
	// CPU time that fell: another process under the same id (a container
	// restarted with its YOLK_ID); its usage starts over
	if ok && now.After(prev.at) && hb.CPU >= prev.hb.CPU {
		b.cpuPct = 100 * (hb.CPU - prev.hb.CPU) / now.Sub(prev.at).Seconds()
	}
	m.beats[id] = b
	if ok { // a child's first heartbeat is where its counts start
		for verb, n := range hb.Sent {
			if was := prev.hb.Sent[verb]; n >= was {
				m.calls[verb] += n - was
			} else {
				m.calls[verb] += n // it restarted: counts from 0
			}
		}
	}
	if role == bus.RoleAgent { // only the agent has timers
		m.plans = hb.Schedules
	}
	if role != bus.RoleWorker {
		return nil
	}
	for _, r := range hb.Runs {
		prev, ok := m.runs[r.Name]
		if ok && r.Started.Before(prev.Started) {
			continue
		}
		if !ok && len(m.runs) >= maxRuns {
			continue
		}
		m.runs[r.Name] = workerRun{RunResult: r, worker: id}
	}
	return nil
}

// schedules joins the agent's timers and the workers' last runs.
func (m *model) schedules() []scheduleStatus {
	out := make([]scheduleStatus, 0, len(m.plans))
	for _, p := range m.plans {
		s := scheduleStatus{Planned: p}
		if r, ok := m.runs[p.Name]; ok {
			s.RunSeq, s.Outcome, s.Err, s.DurationMs, s.Worker = r.Seq, r.Outcome, r.Err, r.TookMs, r.worker
		}
		out = append(out, s)
	}
	return out
}

// heartbeat returns the last heartbeat of the child with that id and when it
// came, if one came since the child started: what the watchdog reads.
func (m *model) heartbeat(id string) (masterapi.Heartbeat, time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.beats[id]
	return b.hb, b.at, ok
}

// sample records the master's own usage and the children's messenger totals
// at now, once per round of heartbeats.
func (m *model) sample(now time.Time) {
	self := beat{at: now}
	if u, err := procstat.Self(); err == nil {
		self.hb.RSS, self.hb.CPU = u.RSS, u.CPU.Seconds()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.self.at.IsZero() && self.hb.CPU >= m.self.hb.CPU {
		self.cpuPct = 100 * (self.hb.CPU - m.self.hb.CPU) / now.Sub(m.self.at).Seconds()
	}
	m.self = self
	m.sent = append(m.sent, sentSample{at: now, calls: m.calls})
	m.calls = make(map[string]uint64)
	for len(m.sent) > 2 && now.Sub(m.sent[1].at) >= rateWindow {
		m.sent = m.sent[1:]
	}
}

// forget drops what the model holds of children no longer alive, and
// returns the ids of those alive.
func (m *model) forget(live []processStatus) map[string]bool {
	ids := make(map[string]bool, len(live))
	for _, p := range live {
		ids[p.ID] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	maps.DeleteFunc(m.reports, func(id string, _ report) bool { return !ids[id] })
	maps.DeleteFunc(m.beats, func(id string, _ beat) bool { return !ids[id] })
	return ids
}

// rates are the children's messenger calls per second over the samples
// held, by verb: the sum of each child's calls between its heartbeats, so
// that a child that leaves or restarts takes nothing away from the others.
func (m *model) rates() map[string]float64 {
	out := make(map[string]float64)
	if len(m.sent) < 2 {
		return out
	}
	secs := m.sent[len(m.sent)-1].at.Sub(m.sent[0].at).Seconds()
	if secs <= 0 {
		return out
	}
	for _, s := range m.sent[1:] { // the first sample's calls came before the window
		for verb, n := range s.calls {
			out[verb] += float64(n) / secs
		}
	}
	return out
}

// fill returns the children of live with what the model knows of each, and
// the master's own row filled in.
func (m *model) fill(master processStatus, live []processStatus) (processStatus, []processStatus) {
	m.mu.Lock()
	defer m.mu.Unlock()
	master.RSS, master.CPU, master.CPUPercent, master.Beat = m.self.hb.RSS, m.self.hb.CPU, m.self.cpuPct, m.self.at
	for i := range live {
		p := &live[i]
		if r, ok := m.reports[p.ID]; ok {
			st := r.st
			p.Cache, p.Reported = &st, r.at
		}
		if b, ok := m.beats[p.ID]; ok {
			p.RSS, p.CPU, p.CPUPercent, p.Goroutines, p.Wire, p.Beat = b.hb.RSS, b.hb.CPU, b.cpuPct, b.hb.Goroutines, b.hb.Wire, b.at
		}
	}
	return master, live
}

// view is the whole status: what the status request answers and the page shows.
func (m *model) view(master processStatus, base statusReply) statusReply {
	live := m.live()
	base.Master, base.Children = m.fill(master, live)
	base.Now = time.Now()
	m.mu.Lock()
	base.Timeline = make([]change, len(m.timeline))
	for i, c := range m.timeline {
		base.Timeline[i] = c.clone()
	}
	base.Rates = m.rates()
	base.Schedules = m.schedules()
	m.mu.Unlock()
	if base.Health == "" {
		base.Health = health(base.Children)
	}
	return base
}

// health is "ok" when the agent and every worker are ready, else
// "degraded: " and what is wrong, the first thing first.
func health(children []processStatus) string {
	for _, p := range children {
		if p.State == stateMissing {
			return "degraded: the " + p.Role + " is missing"
		}
	}
	if err := readiness(children); err != nil {
		return "degraded: " + err.Error()
	}
	for _, p := range children {
		if p.State != supervisor.StateReady {
			return "degraded: " + the(p.Role) + " is " + p.State
		}
	}
	return "ok"
}

func the(role string) string {
	if role == string(bus.RoleAgent) {
		return "the agent"
	}
	return "a " + role
}

// stateMissing is the state of a row the master expects and nobody fills: in
// external mode, the agent when none is connected (the platform did not
// restart it: `docker kill` is a manual stop for Docker).
const stateMissing = "missing"

// stateDegraded is the master's state in external mode when the service was
// ready and no longer is.
const stateDegraded = "degraded"

// withMissing returns children with a row for the agent, state missing, if
// there is none: external mode's members are only those connected.
func withMissing(children []processStatus) []processStatus {
	for _, p := range children {
		if p.Role == string(bus.RoleAgent) {
			return children
		}
	}
	return append([]processStatus{{Role: string(bus.RoleAgent), State: stateMissing}}, children...)
}

// subscribe returns a channel that gets a value (without blocking the model)
// after each change of the model, and a func to call when done with it.
func (m *model) subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	m.mu.Lock()
	m.subs[ch] = struct{}{}
	m.mu.Unlock()
	return ch, func() {
		m.mu.Lock()
		delete(m.subs, ch)
		m.mu.Unlock()
	}
}

func (m *model) changed() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for ch := range m.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// A pinger asks the child with that id for its heartbeat, within ctx.
type pinger func(ctx context.Context, id string) (masterapi.Heartbeat, error)

// pingOver returns the pinger that asks on the bus.
func pingOver(conn *bus.Conn) pinger {
	return func(ctx context.Context, id string) (masterapi.Heartbeat, error) {
		var hb masterapi.Heartbeat
		msg, err := conn.Request(ctx, id, masterapi.EventPing, nil)
		if err == nil {
			err = msg.Decode(&hb)
		}
		return hb, err
	}
}

// heartbeats pings every live child each interval until ctx is done, and
// records the answers; a child that does not answer within the interval keeps
// its last heartbeat (its Beat time shows how old).
func (m *model) heartbeats(ctx context.Context, ping pinger, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	refused := make(map[string]bool) // children whose heartbeat was refused, logged once each
	for {
		live := m.live()
		errs := make([]error, len(live))
		var wg sync.WaitGroup
		for i, p := range live {
			if p.ID == "" || p.PID == 0 && p.State != supervisor.StateReady {
				continue // not started yet
			}
			wg.Go(func() {
				rctx, cancel := context.WithTimeout(ctx, interval)
				defer cancel()
				if hb, err := ping(rctx, p.ID); err == nil {
					errs[i] = m.beat(p.ID, bus.Role(p.Role), hb, time.Now())
				}
			})
		}
		wg.Wait()
		for i, err := range errs {
			if p := live[i]; err != nil && !refused[p.ID] {
				refused[p.ID] = true
				log.Warn("heartbeat refused; the last good one stays", "role", p.Role, "child", p.ID, "pid", p.PID, "err", err)
			}
		}
		m.sample(time.Now())
		// the children alive now, not at the start of the round: one that
		// started and reported during the round keeps its report
		live = m.live()
		now := m.forget(live)
		if m.onRound != nil {
			m.onRound(live)
		}
		maps.DeleteFunc(refused, func(id string, _ bool) bool { return !now[id] })
		m.changed()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// selfStatus is the master's own row.
func selfStatus(id string, began time.Time, state string) processStatus {
	return processStatus{Role: "master", ID: id, PID: os.Getpid(), State: state, Started: began}
}
