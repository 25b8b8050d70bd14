package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
)

// Errors returned by [Runner.Dispatch]; each is wrapped with the schedule's
// name, so test for them with errors.Is.
var (
	// ErrOverlap: a run of the same schedule is still going in this
	// process, so the new run was skipped. Dispatch has already logged it.
	ErrOverlap = errors.New("schedule: previous run still going; run skipped")
	// ErrUnknown: no task is registered under the run's name.
	ErrUnknown = errors.New("schedule: no task registered")
	// ErrDisabled: the schedule's Spec has Disable set.
	ErrDisabled = errors.New("schedule: schedule is disabled")
	// ErrStopped: Wait has been called, so the Runner starts no more runs.
	ErrStopped = errors.New("schedule: runner is stopped")
)

// errRunTimeout is the cause of a run's context when its deadline passed.
var errRunTimeout = errors.New("schedule: run timed out")

// Task does the work of one run. ctx is done when the run's deadline
// ([Spec.RunTimeout]) passes or the ctx given to Dispatch is cancelled; a
// task should return promptly then, since the next run of its schedule is
// skipped while it is still going.
type Task func(ctx context.Context, r Run) error

// Runner runs the tasks of the schedules registered with Handle, one run
// at a time per schedule. It lives in each worker. Its methods are safe for
// concurrent use.
type Runner struct {
	log     *slog.Logger
	wg      sync.WaitGroup
	mu      sync.Mutex
	jobs    map[string]*job
	stopped bool
}

// Result is how the last run of a schedule in a Runner went, or goes.
type Result struct {
	Run     Run
	Started time.Time
	// Took is the run's duration, 0 while it runs.
	Took time.Duration
	// Outcome is running, ok, error, timeout or canceled (as the run's log).
	Outcome string
	// Err is the task's error, if any.
	Err string
}

// Results returns the last run that started in r of each schedule, by name.
// Safe for concurrent use.
func (r *Runner) Results() []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Result
	for _, j := range r.jobs {
		if j.last.Run.Seq != 0 || !j.last.Started.IsZero() {
			out = append(out, j.last)
		}
	}
	slices.SortFunc(out, func(a, b Result) int { return strings.Compare(a.Run.Name, b.Run.Name) })
	return out
}

// job is a registered schedule. running and seq are guarded by Runner.mu.
type job struct {
	spec    Spec
	task    Task
	running bool
	seq     uint64 // of the run going on, when running
	last    Result // the last run started, or its end
}

// NewRunner returns a Runner that logs each run to log. A nil log discards
// the messages.
func NewRunner(log *slog.Logger) *Runner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runner{log: log, jobs: make(map[string]*job)}
}

// Handle registers task to run for each Run named spec.Name. It returns an
// error, and registers nothing, when spec is invalid, task is nil or the
// name is already registered.
func (r *Runner) Handle(spec Spec, task Task) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	if task == nil {
		return fmt.Errorf("schedule %q: task is nil", spec.Name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.jobs[spec.Name]; ok {
		return fmt.Errorf("schedule %q: already registered", spec.Name)
	}
	r.jobs[spec.Name] = &job{spec: spec, task: task}
	return nil
}

// Dispatch starts the task registered for run.Name in a new goroutine and
// returns without waiting for it. The task's ctx is derived from ctx with
// the Spec's RunTimeout; cancelling ctx cancels the run. When the run ends,
// the Runner logs "schedule run" with the schedule, seq, took, outcome (ok,
// error, timeout or canceled) and err. A task that panics is recovered and
// logged as an error with its stack.
//
// Dispatch starts nothing and returns an error wrapping ErrOverlap when a run
// of the same schedule is still going (it logs the skip itself), ErrUnknown
// when no task has the name, ErrDisabled when its Spec is disabled,
// ErrStopped once Wait has been called, or ctx's error when ctx is done.
func (r *Runner) Dispatch(ctx context.Context, run Run) error {
	running, err := r.start(ctx, run)
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrOverlap) {
		r.log.Warn("schedule run skipped: previous run still going",
			"schedule", run.Name, "seq", run.Seq, "running", running)
	}
	return fmt.Errorf("dispatch %q run %d: %w", run.Name, run.Seq, err)
}

// start starts run unless Dispatch must refuse it. On ErrOverlap it also
// returns the seq of the run still going.
func (r *Runner) start(ctx context.Context, run Run) (running uint64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	j, ok := r.jobs[run.Name]
	switch {
	case !ok:
		return 0, ErrUnknown
	case j.spec.Disable:
		return 0, ErrDisabled
	case r.stopped:
		return 0, ErrStopped
	case ctx.Err() != nil:
		return 0, ctx.Err()
	case j.running:
		return j.seq, ErrOverlap
	}
	j.running, j.seq = true, run.Seq
	j.last = Result{Run: run, Started: time.Now(), Outcome: "running"}
	r.wg.Go(func() { r.run(ctx, j, run) })
	return 0, nil
}

// Wait stops the Runner from starting new runs and waits until every run
// has ended. Cancel the ctx given to Dispatch first, or Wait lasts until the
// runs reach their deadlines. Wait may be called more than once.
func (r *Runner) Wait() {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	r.wg.Wait()
}

// run runs one task to completion, logs the outcome and frees the schedule
// for its next run.
func (r *Runner) run(ctx context.Context, j *job, run Run) {
	start := time.Now()
	runCtx, cancel := context.WithTimeoutCause(ctx, j.spec.RunTimeout(), errRunTimeout)
	stack, err := call(runCtx, j.task, run)
	took := time.Since(start)
	cancel()

	attrs := []any{"schedule", run.Name, "seq", run.Seq, "took", took.Round(time.Microsecond).String()}
	level, outcome := slog.LevelInfo, "ok"
	switch {
	case err == nil:
	case context.Cause(runCtx) == errRunTimeout:
		level, outcome = slog.LevelError, "timeout"
	case ctx.Err() != nil:
		level, outcome = slog.LevelWarn, "canceled"
	default:
		level, outcome = slog.LevelError, "error"
	}
	attrs = append(attrs, "outcome", outcome)
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	if stack != nil {
		attrs = append(attrs, "stack", string(stack))
	}
	r.log.Log(context.Background(), level, "schedule run", attrs...)

	r.mu.Lock()
	j.running = false
	j.last.Took, j.last.Outcome = took, outcome
	if err != nil {
		j.last.Err = err.Error()
	}
	r.mu.Unlock()
}

// call runs task, turning a panic into an error and its stack.
func call(ctx context.Context, task Task, run Run) (stack []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			stack, err = debug.Stack(), fmt.Errorf("panic: %v", p)
		}
	}()
	return nil, task(ctx, run)
}
