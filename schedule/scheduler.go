package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"
)

// Run is one firing of a schedule, as the agent sends it to a worker.
type Run struct {
	// Name is the Spec's name.
	Name string `json:"name"`
	// Type is the Spec's type: whether this run goes to one worker or all.
	Type Type `json:"type"`
	// At is the time the run was due (not the slightly later time it was
	// fired), without a monotonic clock reading.
	At time.Time `json:"at"`
	// Seq numbers the firings of one schedule from 1 within one Scheduler.Run;
	// a skipped tick takes no number.
	Seq uint64 `json:"seq"`
	// Fence is, for a Cluster run, the fencing token of the run: the
	// revision of the lease's write that claimed it, larger than that of
	// every earlier run of the schedule across the fleet. A task that writes
	// to a store outside yolk can hand it along, so that the store refuses
	// the late write of a run whose host lost the lease meanwhile. 0 for
	// other runs.
	Fence uint64 `json:"fence,omitempty"`
}

// Tick is the number of the run's due time, the same in every process
// whatever its start: for an Interval schedule, the number of Intervals
// since the Unix epoch (a Cluster schedule's ticks fall on those); for a
// Cron schedule, the Unix time in seconds.
func (s Spec) Tick(at time.Time) uint64 {
	if s.Interval > 0 {
		return uint64(at.UnixNano() / int64(s.Interval))
	}
	return uint64(at.Unix())
}

// Scheduler owns the timers of a set of schedules and calls a fire function
// for each firing. It lives in the agent.
type Scheduler struct {
	plans   []plan // enabled schedules only
	fire    func(ctx context.Context, r Run)
	log     *slog.Logger
	started atomic.Bool

	mu  sync.Mutex
	now map[string]Planned // by name, what Planned reports
}

// Planned is an enabled schedule as its Scheduler sees it.
type Planned struct {
	Spec Spec
	// Last is the last firing; zero (Seq 0) before the first.
	Last Run
	// Next is when it fires next; zero before Run starts it, and after its
	// last firing.
	Next time.Time
}

// Planned returns every enabled schedule, in the order of the specs given
// to NewScheduler, with its last and next firing. Safe for concurrent use.
func (s *Scheduler) Planned() []Planned {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Planned, 0, len(s.plans))
	for _, p := range s.plans {
		pl := s.now[p.spec.Name]
		pl.Spec = p.spec
		out = append(out, pl)
	}
	return out
}

// planned records a schedule's last firing (when r is not nil) and next time.
func (s *Scheduler) planned(name string, r *Run, next time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pl := s.now[name]
	if r != nil {
		pl.Last = *r
	}
	pl.Next = next
	s.now[name] = pl
}

// plan is one enabled schedule: its Spec and its parsed cron expression
// (nil for an Interval schedule).
type plan struct {
	spec Spec
	cron cron.Schedule
}

// NewScheduler validates specs and returns a Scheduler that calls fire for
// each firing of each enabled spec once Run is called. The error joins the
// problems of every bad spec; duplicate names are an error too. A nil log
// discards the Scheduler's messages.
//
// fire is called from one goroutine per schedule, so it must be safe for
// concurrent use when there are several schedules; it should return quickly
// (hand the run to the bus and return). Its ctx is the one given to Run.
func NewScheduler(specs []Spec, fire func(ctx context.Context, r Run), log *slog.Logger) (*Scheduler, error) {
	if fire == nil {
		return nil, errors.New("schedule: fire function is nil")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Scheduler{fire: fire, log: log, now: make(map[string]Planned)}
	var problems []error
	seen := make(map[string]bool, len(specs))
	for _, spec := range specs {
		sched, err := spec.parse()
		if err != nil {
			problems = append(problems, err)
			continue
		}
		if seen[spec.Name] {
			problems = append(problems, fmt.Errorf("schedule %q: name is used twice", spec.Name))
			continue
		}
		seen[spec.Name] = true
		if spec.Disable {
			continue
		}
		s.plans = append(s.plans, plan{spec: spec, cron: sched})
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	return s, nil
}

// Run fires the enabled schedules until ctx is done, then returns nil once
// every timer goroutine has ended. A fire call in progress is not interrupted
// beyond the cancellation of its ctx. Run may be called once; a second call
// returns an error at once.
//
// Interval schedules fire at start+Interval, start+2*Interval, ... where
// start is the time Run was called; cron schedules fire at the times their
// expression gives. When a fire call outlasts one or more ticks, those ticks
// are skipped (and logged): the next firing is the first tick after fire
// returned.
func (s *Scheduler) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("schedule: Scheduler.Run called twice")
	}
	var wg sync.WaitGroup
	for _, p := range s.plans {
		wg.Go(func() { s.loop(ctx, p) })
	}
	<-ctx.Done()
	wg.Wait()
	return nil
}

// loop fires one schedule until ctx is done.
func (s *Scheduler) loop(ctx context.Context, p plan) {
	start := time.Now()
	if p.spec.Type == Cluster {
		start = time.Unix(0, 0) // every host's timers on the same ticks
	}
	next := p.next(start, time.Now())
	s.planned(p.spec.Name, nil, next)
	var seq uint64
	fire := func(at time.Time) {
		seq++
		r := Run{Name: p.spec.Name, Type: p.spec.Type, At: at.Round(0), Seq: seq}
		s.planned(p.spec.Name, &r, next)
		s.fire(ctx, r)
	}
	if p.spec.Immediate {
		fire(time.Now())
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		if next.IsZero() {
			s.log.Warn("schedule has no next time; it stops firing", "schedule", p.spec.Name)
			return
		}
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if ctx.Err() != nil {
			return
		}
		at := next
		fire(at)
		next = p.next(start, at)
		if now := time.Now(); !next.IsZero() && !next.After(now) {
			missed := next
			next = p.next(start, now)
			s.log.Warn("schedule ticks skipped: fire was slow",
				"schedule", p.spec.Name, "seq", seq, "missed", missed.Round(0), "next", next.Round(0))
		}
		s.planned(p.spec.Name, nil, next)
	}
}

// next returns the first time the schedule fires strictly after after, or
// the zero time when it never fires again. The ticks of an Interval schedule
// are start+k*Interval for k >= 1.
func (p plan) next(start, after time.Time) time.Time {
	if p.cron != nil {
		return p.cron.Next(after)
	}
	iv := p.spec.Interval
	ticks := max(after.Sub(start)/iv, 0) // whole intervals elapsed; Sub saturates
	// start + ticks*iv <= after, so the multiplication cannot overflow.
	return start.Add(ticks * iv).Add(iv)
}
