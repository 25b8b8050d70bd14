package schedule

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// firing is one call of the fire function, as the tests see it.
type firing struct {
	run   Run
	after time.Duration // since the Scheduler started
}

// recorder is a fire function that records its calls. It is safe for
// concurrent use; slow, when set, is called within fire.
type recorder struct {
	start time.Time
	slow  func(Run)
	mu    sync.Mutex
	got   []firing
}

func (rec *recorder) fire(_ context.Context, r Run) {
	rec.mu.Lock()
	rec.got = append(rec.got, firing{run: r, after: time.Since(rec.start)})
	rec.mu.Unlock()
	if rec.slow != nil {
		rec.slow(r)
	}
}

// named returns the firings of the schedule name, in order.
func (rec *recorder) named(name string) []firing {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []firing
	for _, f := range rec.got {
		if f.run.Name == name {
			out = append(out, f)
		}
	}
	return out
}

// runFor runs a Scheduler of specs for d of the bubble's fake time, then
// cancels it and waits for Run to return. It must be called in a bubble.
func runFor(t *testing.T, d time.Duration, specs []Spec, rec *recorder) *logBuf {
	t.Helper()
	log, lb := newTestLog()
	s, err := NewScheduler(specs, rec.fire, log)
	if err != nil {
		t.Fatalf("NewScheduler: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	rec.start = time.Now()
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	time.Sleep(d)
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("Run() = %v, want nil after cancel", err)
	}
	return lb
}

// checkFirings compares the times of firings with want, and checks that
// their Seq counts from 1 and At is the due time.
func checkFirings(t *testing.T, rec *recorder, name string, want ...time.Duration) {
	t.Helper()
	got := rec.named(name)
	var afters []time.Duration
	for i, f := range got {
		afters = append(afters, f.after)
		if f.run.Seq != uint64(i+1) {
			t.Errorf("firing %d of %q: Seq = %d, want %d", i, name, f.run.Seq, i+1)
		}
		if wantAt := rec.start.Add(f.after); !f.run.At.Equal(wantAt) {
			t.Errorf("firing %d of %q: At = %v, want %v", i, name, f.run.At, wantAt)
		}
	}
	if !slices.Equal(afters, want) {
		t.Errorf("%q fired after %v, want %v", name, afters, want)
	}
}

func TestSchedulerInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		runFor(t, 35*time.Second, []Spec{{Name: "pull_refresh", Interval: 10 * time.Second, Type: Worker}}, rec)
		checkFirings(t, rec, "pull_refresh", 10*time.Second, 20*time.Second, 30*time.Second)
		for _, f := range rec.got {
			if f.run.Type != Worker {
				t.Errorf("Run.Type = %v, want %v", f.run.Type, Worker)
			}
		}
	})
}

func TestSchedulerImmediate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		runFor(t, 25*time.Second, []Spec{{Name: "warm", Interval: 10 * time.Second, Type: All, Immediate: true}}, rec)
		checkFirings(t, rec, "warm", 0, 10*time.Second, 20*time.Second)
	})
}

func TestSchedulerDisable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		runFor(t, 50*time.Minute, []Spec{
			{Name: "off", Interval: time.Second, Type: Worker, Immediate: true, Disable: true},
			{Name: "off_cron", Cron: "* * * * * *", Type: Worker, Disable: true},
			{Name: "on", Interval: 20 * time.Minute, Type: Worker},
		}, rec)
		checkFirings(t, rec, "off")
		checkFirings(t, rec, "off_cron")
		checkFirings(t, rec, "on", 20*time.Minute, 40*time.Minute)
	})
}

func TestSchedulerCron(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A bubble starts at 2000-01-01 00:00:00 UTC, an even second.
		if start := time.Now(); start.Second()%2 != 0 || start.Nanosecond() != 0 {
			t.Fatalf("bubble starts at %v, want a whole even second", start)
		}
		rec := &recorder{}
		runFor(t, 7*time.Second, []Spec{{Name: "every2s", Cron: "*/2 * * * * *", Type: Worker}}, rec)
		checkFirings(t, rec, "every2s", 2*time.Second, 4*time.Second, 6*time.Second)
	})
}

func TestSchedulerCronDaily(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		runFor(t, 50*time.Hour, []Spec{{Name: "nightly", Cron: "CRON_TZ=UTC 0 0 3 * * *", Type: Worker, Immediate: true}}, rec)
		checkFirings(t, rec, "nightly", 0, 3*time.Hour, 27*time.Hour)
	})
}

// A fire call that outlasts several ticks skips them: the next firing is
// the first tick after it returned, and nothing is queued up.
func TestSchedulerSlowFire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{slow: func(r Run) {
			if r.Seq == 1 {
				time.Sleep(3500 * time.Millisecond) // ticks at 2s, 3s and 4s pass
			}
		}}
		lb := runFor(t, 7500*time.Millisecond, []Spec{{Name: "slow", Interval: time.Second, Type: Worker}}, rec)
		checkFirings(t, rec, "slow", 1*time.Second, 5*time.Second, 6*time.Second, 7*time.Second)
		if got := lb.records(t, "schedule ticks skipped: fire was slow"); len(got) != 1 || got[0]["schedule"] != "slow" {
			t.Errorf("skip log = %v, want one record for %q", got, "slow")
		}
	})
}

// A slow schedule does not hold up another one.
func TestSchedulerSchedulesIndependent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{slow: func(r Run) {
			if r.Name == "slow" {
				time.Sleep(time.Hour)
			}
		}}
		runFor(t, 3500*time.Millisecond, []Spec{
			{Name: "slow", Interval: time.Second, Type: Worker},
			{Name: "fast", Interval: time.Second, Type: All},
		}, rec)
		checkFirings(t, rec, "fast", 1*time.Second, 2*time.Second, 3*time.Second)
		checkFirings(t, rec, "slow", 1*time.Second)
	})
}

func TestSchedulerRunTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := NewScheduler(nil, func(context.Context, Run) {}, nil)
		if err != nil {
			t.Fatalf("NewScheduler(nil) = %v", err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- s.Run(ctx) }()
		synctest.Wait()
		if err := s.Run(ctx); err == nil {
			t.Errorf("second Run() = nil, want an error")
		}
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
	})
}

func TestNewSchedulerErrors(t *testing.T) {
	fire := func(context.Context, Run) {}
	ok := Spec{Name: "a", Interval: time.Second, Type: Worker}
	tests := []struct {
		name  string
		specs []Spec
		fire  func(context.Context, Run)
		want  []string
	}{
		{"duplicate", []Spec{ok, {Name: "a", Cron: "@daily", Type: All}}, fire, []string{`schedule "a": name is used twice`}},
		{"duplicate disabled", []Spec{ok, {Name: "a", Interval: time.Minute, Type: All, Disable: true}}, fire, []string{`schedule "a": name is used twice`}},
		{"every bad spec", []Spec{{Name: "b", Type: Worker}, ok, {Name: "c", Interval: time.Second, Cron: "@daily", Type: Worker}}, fire,
			[]string{`schedule "b": neither`, `schedule "c": interval and cron are both set`}},
		{"nil fire", []Spec{ok}, nil, []string{"fire function is nil"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewScheduler(tt.specs, tt.fire, nil)
			if err == nil {
				t.Fatalf("NewScheduler(%v) = %v, nil, want an error", tt.specs, s)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("NewScheduler(%v) error = %q, want it to contain %q", tt.specs, err, w)
				}
			}
		})
	}
	if _, err := NewScheduler([]Spec{ok}, fire, nil); err != nil {
		t.Errorf("NewScheduler(%v) error = %v, want nil", ok, err)
	}
}

// A Cluster schedule's ticks fall on multiples of its Interval since the
// Unix epoch, whenever its Scheduler started: two hosts started apart fire
// the same ticks, and Spec.Tick numbers each by its time alone.
func TestSchedulerClusterTicksAreTheEpochs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		spec := Spec{Name: "once", Interval: 300 * time.Millisecond, Type: Cluster}
		time.Sleep(123 * time.Millisecond) // start off the grid
		a := &recorder{}
		runFor(t, 2*time.Second, []Spec{spec}, a)
		time.Sleep(77 * time.Millisecond)
		b := &recorder{}
		runFor(t, 2*time.Second, []Spec{spec}, b)
		for _, rec := range []*recorder{a, b} {
			fs := rec.named("once")
			if len(fs) < 5 {
				t.Fatalf("%d firings in 2s, want at least 5", len(fs))
			}
			for _, f := range fs {
				if f.run.At.UnixNano()%int64(spec.Interval) != 0 {
					t.Errorf("fired at %v: not a multiple of %v since the epoch", f.run.At, spec.Interval)
				}
				if tick := spec.Tick(f.run.At); !time.Unix(0, int64(tick)*int64(spec.Interval)).Equal(f.run.At) {
					t.Errorf("fired at %v: tick %d is another time", f.run.At, tick)
				}
			}
		}
	})
}
