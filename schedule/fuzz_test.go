package schedule

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// FuzzSpec feeds arbitrary names, cron texts, intervals and types to
// Validate. It must never panic, and a Spec it accepts must give a
// Scheduler that fires the first time the Spec says it should.
func FuzzSpec(f *testing.F) {
	f.Add("pull_refresh", "", int64(10*time.Second), uint8(Worker))
	f.Add("nightly", "0 0 3 * * *", int64(0), uint8(All))
	f.Add("tz", "CRON_TZ=Europe/Paris 0 30 9 * * MON-FRI", int64(0), uint8(Worker))
	f.Add("tz_only", "CRON_TZ=UTC", int64(0), uint8(Worker))
	f.Add("leap", "0 0 0 29 2 *", int64(0), uint8(Worker))
	f.Add("every", "@every 1h30m", int64(0), uint8(Worker))
	f.Add("tiny", "", int64(1), uint8(All))
	f.Add("shortest", "", int64(MinInterval), uint8(All))
	f.Add("longest", "", int64(MaxInterval), uint8(All))
	f.Add("every_huge", "@every 2562047h", int64(0), uint8(Worker))
	f.Add("every_longest", "@every 8760h", int64(0), uint8(Worker))
	f.Add("huge", "", int64(1<<63-1), uint8(All))
	f.Add("both", "* * * * * *", int64(time.Second), uint8(Worker))
	f.Add("a.b", "", int64(-1), uint8(9))
	f.Fuzz(func(t *testing.T, name, cronText string, interval int64, typ uint8) {
		spec := Spec{Name: name, Cron: cronText, Interval: time.Duration(interval), Type: Type(typ)}
		if err := spec.Validate(); err != nil {
			if _, serr := NewScheduler([]Spec{spec}, func(context.Context, Run) {}, nil); serr == nil {
				t.Fatalf("Validate(%+v) = %v but NewScheduler accepted it", spec, err)
			}
			return
		}
		synctest.Test(t, func(t *testing.T) { checkFirstFiring(t, spec) })
	})
}

// checkFirstFiring runs a Scheduler of spec until the time of its first
// tick and checks that it fired then. It must be called in a bubble.
func checkFirstFiring(t *testing.T, spec Spec) {
	fired := make(chan Run, 1)
	s, err := NewScheduler([]Spec{spec}, func(_ context.Context, r Run) {
		select {
		case fired <- r:
		default:
		}
	}, nil)
	if err != nil {
		t.Fatalf("Validate(%+v) = nil but NewScheduler: %v", spec, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	start := time.Now()
	var want time.Time
	switch {
	case spec.Interval > 0 && spec.Type == Cluster:
		// the first multiple of Interval since the Unix epoch after start
		iv := int64(spec.Interval)
		want = time.Unix(0, (start.UnixNano()/iv+1)*iv)
	case spec.Interval > 0:
		want = start.Add(spec.Interval)
	default:
		sched, err := parseCron(spec.Cron)
		if err != nil {
			t.Fatalf("parseCron(%q) = %v after Validate accepted it", spec.Cron, err)
		}
		if want = sched.Next(start); want.IsZero() {
			t.Fatalf("cron %q from %v: no next time, though Validate accepted it", spec.Cron, start)
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	time.Sleep(time.Until(want))
	synctest.Wait()
	select {
	case r := <-fired:
		if r.Name != spec.Name || r.Type != spec.Type || r.Seq != 1 || !r.At.Equal(want) {
			t.Errorf("first firing of %+v = %+v, want seq 1 at %v", spec, r, want)
		}
	default:
		t.Errorf("%+v did not fire by %v", spec, want)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("Run() = %v, want nil", err)
	}
}
