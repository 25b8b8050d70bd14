package schedule

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// runLog returns the single "schedule run" record of the schedule name.
func runLog(t *testing.T, lb *logBuf, name string) map[string]any {
	t.Helper()
	var found []map[string]any
	for _, rec := range lb.records(t, "schedule run") {
		if rec["schedule"] == name {
			found = append(found, rec)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%q: %d \"schedule run\" log records, want 1: %v", name, len(found), found)
	}
	return found[0]
}

// checkRunLog checks the outcome and duration logged for one run.
func checkRunLog(t *testing.T, rec map[string]any, outcome string, took time.Duration) {
	t.Helper()
	if rec["outcome"] != outcome {
		t.Errorf("%q run: outcome = %v, want %q (record %v)", rec["schedule"], rec["outcome"], outcome, rec)
	}
	if got, _ := rec["took"].(string); got != took.String() {
		t.Errorf("%q run: took = %q, want %q", rec["schedule"], got, took)
	}
	if _, ok := rec["seq"]; !ok {
		t.Errorf("%q run: no seq in %v", rec["schedule"], rec)
	}
	if _, hasErr := rec["err"]; hasErr != (outcome != "ok") {
		t.Errorf("%q run: err present = %v in %v, want %v", rec["schedule"], hasErr, rec, outcome != "ok")
	}
}

func mustHandle(t *testing.T, r *Runner, spec Spec, task Task) {
	t.Helper()
	if err := r.Handle(spec, task); err != nil {
		t.Fatalf("Handle(%+v) = %v", spec, err)
	}
}

func TestRunnerTimeout(t *testing.T) {
	tests := []struct {
		spec Spec
		want time.Duration
	}{
		{Spec{Interval: 5 * time.Second}, 5 * time.Second},
		{Spec{Interval: 10 * time.Second, Timeout: 2 * time.Second}, 2 * time.Second},
		{Spec{Interval: 24 * time.Hour}, 10 * time.Minute},
		{Spec{Cron: "0 0 3 * * *"}, time.Minute},
		{Spec{Cron: "0 0 3 * * *", Timeout: 30 * time.Minute}, 30 * time.Minute},
	}
	for i, tt := range tests {
		spec := tt.spec
		spec.Name, spec.Type = fmt.Sprintf("job%d", i), Worker
		t.Run(spec.Name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				log, lb := newTestLog()
				r := NewRunner(log)
				var blocked time.Duration
				start := time.Now()
				mustHandle(t, r, spec, func(ctx context.Context, _ Run) error {
					<-ctx.Done()
					blocked = time.Since(start)
					return ctx.Err()
				})
				if err := r.Dispatch(t.Context(), Run{Name: spec.Name, Type: Worker, Seq: 1}); err != nil {
					t.Fatalf("Dispatch() = %v", err)
				}
				r.Wait()
				if blocked != tt.want {
					t.Errorf("task ctx done after %v, want %v", blocked, tt.want)
				}
				checkRunLog(t, runLog(t, lb, spec.Name), "timeout", tt.want)
			})
		})
	}
}

func TestRunnerOverlap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, lb := newTestLog()
		r := NewRunner(log)
		release := make(chan struct{})
		var ran []uint64
		spec := Spec{Name: "pull_refresh", Interval: time.Minute, Type: Worker}
		mustHandle(t, r, spec, func(ctx context.Context, run Run) error {
			ran = append(ran, run.Seq)
			<-release
			return nil
		})
		ctx := t.Context()
		if err := r.Dispatch(ctx, Run{Name: spec.Name, Seq: 1}); err != nil {
			t.Fatalf("Dispatch(seq 1) = %v", err)
		}
		synctest.Wait()
		if err := r.Dispatch(ctx, Run{Name: spec.Name, Seq: 2}); !errors.Is(err, ErrOverlap) {
			t.Fatalf("Dispatch(seq 2) while seq 1 runs = %v, want ErrOverlap", err)
		}
		skips := lb.records(t, "schedule run skipped: previous run still going")
		if len(skips) != 1 || skips[0]["schedule"] != spec.Name || skips[0]["seq"] != 2.0 || skips[0]["running"] != 1.0 {
			t.Errorf("skip log = %v, want one record with schedule %q, seq 2, running 1", skips, spec.Name)
		}
		time.Sleep(time.Second)
		close(release)
		synctest.Wait() // seq 1 has ended
		if err := r.Dispatch(ctx, Run{Name: spec.Name, Seq: 3}); err != nil {
			t.Fatalf("Dispatch(seq 3) after seq 1 ended = %v", err)
		}
		r.Wait()
		if want := []uint64{1, 3}; fmt.Sprint(ran) != fmt.Sprint(want) {
			t.Errorf("ran seqs %v, want %v", ran, want)
		}
		runs := lb.records(t, "schedule run")
		if len(runs) != 2 {
			t.Fatalf("%d \"schedule run\" records, want 2: %v", len(runs), runs)
		}
		checkRunLog(t, runs[0], "ok", time.Second)
		checkRunLog(t, runs[1], "ok", 0)
	})
}

// Runs of different schedules go on at the same time: each task waits
// until the other has started.
func TestRunnerConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, lb := newTestLog()
		r := NewRunner(log)
		started := map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{})}
		other := map[string]string{"a": "b", "b": "a"}
		for name := range started {
			mustHandle(t, r, Spec{Name: name, Interval: time.Minute, Type: All}, func(ctx context.Context, run Run) error {
				close(started[name])
				select {
				case <-started[other[name]]:
				case <-ctx.Done():
					return ctx.Err()
				}
				time.Sleep(time.Second)
				return nil
			})
		}
		start := time.Now()
		for _, name := range []string{"a", "b"} {
			if err := r.Dispatch(t.Context(), Run{Name: name, Type: All, Seq: 1}); err != nil {
				t.Fatalf("Dispatch(%q) = %v", name, err)
			}
		}
		r.Wait()
		if took := time.Since(start); took != time.Second {
			t.Errorf("two 1s runs took %v together, want 1s", took)
		}
		checkRunLog(t, runLog(t, lb, "a"), "ok", time.Second)
		checkRunLog(t, runLog(t, lb, "b"), "ok", time.Second)
	})
}

func TestRunnerOutcomes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, lb := newTestLog()
		r := NewRunner(log)
		spec := func(name string) Spec { return Spec{Name: name, Interval: time.Minute, Type: Worker} }
		mustHandle(t, r, spec("fails"), func(context.Context, Run) error {
			time.Sleep(time.Second)
			return errors.New("source down")
		})
		mustHandle(t, r, spec("panics"), func(context.Context, Run) error { panic("boom") })
		mustHandle(t, r, spec("canceled"), func(ctx context.Context, _ Run) error {
			<-ctx.Done()
			return ctx.Err()
		})
		mustHandle(t, r, spec("late_ok"), func(ctx context.Context, _ Run) error {
			time.Sleep(2 * time.Minute) // ignores ctx, then succeeds
			return nil
		})
		ctx, cancel := context.WithCancel(t.Context())
		for _, name := range []string{"fails", "panics", "canceled", "late_ok"} {
			if err := r.Dispatch(ctx, Run{Name: name, Seq: 1}); err != nil {
				t.Fatalf("Dispatch(%q) = %v", name, err)
			}
		}
		time.Sleep(3 * time.Second)
		cancel()
		r.Wait()

		fails := runLog(t, lb, "fails")
		checkRunLog(t, fails, "error", time.Second)
		if fails["err"] != "source down" || fails["level"] != "ERROR" {
			t.Errorf("fails: err = %v, level = %v, want %q at ERROR", fails["err"], fails["level"], "source down")
		}
		panics := runLog(t, lb, "panics")
		checkRunLog(t, panics, "error", 0)
		if panics["err"] != "panic: boom" || !strings.Contains(fmt.Sprint(panics["stack"]), "runner_test.go") {
			t.Errorf("panics: err = %v, stack = %.200v, want %q and a stack", panics["err"], panics["stack"], "panic: boom")
		}
		checkRunLog(t, runLog(t, lb, "canceled"), "canceled", 3*time.Second)
		checkRunLog(t, runLog(t, lb, "late_ok"), "ok", 2*time.Minute)
	})
}

func TestRunnerDispatchErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRunner(nil)
		task := func(context.Context, Run) error { return nil }
		mustHandle(t, r, Spec{Name: "on", Interval: time.Second, Type: Worker}, task)
		mustHandle(t, r, Spec{Name: "off", Interval: time.Second, Type: Worker, Disable: true}, task)

		if err := r.Dispatch(t.Context(), Run{Name: "nope", Seq: 1}); !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), `"nope"`) {
			t.Errorf("Dispatch(unknown) = %v, want ErrUnknown naming %q", err, "nope")
		}
		if err := r.Dispatch(t.Context(), Run{Name: "off", Seq: 1}); !errors.Is(err, ErrDisabled) {
			t.Errorf("Dispatch(disabled) = %v, want ErrDisabled", err)
		}
		done, cancel := context.WithCancel(t.Context())
		cancel()
		if err := r.Dispatch(done, Run{Name: "on", Seq: 1}); !errors.Is(err, context.Canceled) {
			t.Errorf("Dispatch(cancelled ctx) = %v, want context.Canceled", err)
		}
		r.Wait()
		r.Wait()
		if err := r.Dispatch(t.Context(), Run{Name: "on", Seq: 2}); !errors.Is(err, ErrStopped) {
			t.Errorf("Dispatch after Wait = %v, want ErrStopped", err)
		}
	})
}

func TestRunnerHandleErrors(t *testing.T) {
	r := NewRunner(nil)
	task := func(context.Context, Run) error { return nil }
	ok := Spec{Name: "a", Interval: time.Second, Type: Worker}
	mustHandle(t, r, ok, task)
	tests := []struct {
		name string
		spec Spec
		task Task
		want string
	}{
		{"duplicate", ok, task, `schedule "a": already registered`},
		{"invalid", Spec{Name: "b", Type: Worker}, task, `schedule "b": neither interval nor cron is set`},
		{"nil task", Spec{Name: "c", Interval: time.Second, Type: Worker}, nil, `schedule "c": task is nil`},
	}
	for _, tt := range tests {
		if err := r.Handle(tt.spec, tt.task); err == nil || err.Error() != tt.want {
			t.Errorf("Handle(%s) = %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestRunnerResults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRunner(nil)
		release := make(chan struct{})
		mustHandle(t, r, Spec{Name: "a", Interval: time.Second, Type: Worker}, func(ctx context.Context, _ Run) error { <-release; return nil })
		mustHandle(t, r, Spec{Name: "b", Interval: time.Second, Type: Worker}, func(context.Context, Run) error {
			time.Sleep(time.Millisecond)
			return errors.New("boom")
		})
		mustHandle(t, r, Spec{Name: "never", Interval: time.Second, Type: Worker}, func(context.Context, Run) error { return nil })
		if got := r.Results(); len(got) != 0 {
			t.Fatalf("Results() before any run = %+v, want none", got)
		}
		if err := r.Dispatch(t.Context(), Run{Name: "a", Seq: 1}); err != nil {
			t.Fatal(err)
		}
		if err := r.Dispatch(t.Context(), Run{Name: "b", Seq: 7}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		got := r.Results()
		if len(got) != 2 {
			t.Fatalf("Results() = %+v, want a and b", got)
		}
		if got[0].Run.Name != "a" || got[0].Outcome != "running" || got[0].Took != 0 {
			t.Errorf("Results()[0] = %+v, want a, running", got[0])
		}
		if got[1].Run.Seq != 7 || got[1].Outcome != "error" || got[1].Err != "boom" || got[1].Took != time.Millisecond {
			t.Errorf("Results()[1] = %+v, want b seq 7, error boom, took 1ms", got[1])
		}
		close(release)
		r.Wait()
		if got := r.Results(); got[0].Outcome != "ok" || got[0].Took != time.Second {
			t.Errorf("Results()[0] after the run = %+v, want ok, took 1s", got[0])
		}
	})
}

func TestSchedulerPlanned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fired := make(chan Run, 10)
		s, err := NewScheduler([]Spec{
			{Name: "tick", Interval: 10 * time.Second, Type: Worker},
			{Name: "off", Interval: time.Second, Disable: true, Type: All},
		}, func(_ context.Context, r Run) { fired <- r }, nil)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- s.Run(ctx) }()
		synctest.Wait()
		got := s.Planned()
		if len(got) != 1 || got[0].Spec.Name != "tick" || got[0].Last.Seq != 0 || !got[0].Next.Equal(start.Add(10*time.Second)) {
			t.Fatalf("Planned() at start = %+v, want tick, never fired, next in 10s", got)
		}
		<-fired
		synctest.Wait()
		got = s.Planned()
		if got[0].Last.Seq != 1 || !got[0].Last.At.Equal(start.Add(10*time.Second)) || !got[0].Next.Equal(start.Add(20*time.Second)) {
			t.Errorf("Planned() after a firing = %+v, want seq 1 at 10s, next at 20s", got)
		}
		cancel()
		<-done
	})
}
