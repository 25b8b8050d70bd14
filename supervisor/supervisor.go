package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Spec says how to start one kind of child.
type Spec struct {
	// Role names the child in logs, in Status and in YOLK_ROLE: "agent" or
	// "worker" (the default for Config.Agent and Config.Worker when empty).
	Role string
	Path string
	Args []string
	// Env is the child's full environment; the supervisor appends the env
	// returned by Prepare, then YOLK_LIFELINE_FD and YOLK_ROLE (later entries
	// win). A nil Env gives the child only those variables.
	Env []string
	// ExtraFiles are passed after the lifeline: the first one is fd 4. They
	// stay open in the master and are shared by every child of this Spec.
	ExtraFiles []*os.File
}

// Config configures a Supervisor. Zero durations take the documented defaults.
type Config struct {
	Agent  Spec
	Worker Spec
	// Workers is the number of workers; 0 or less means runtime.GOMAXPROCS(0),
	// which follows the CPUs the process may use (a container's CPU quota).
	Workers int
	// ReadyTimeout bounds the wait for a started child's Ready (default 30s).
	// At the first start Run fails; later the child is killed and counts as a crash.
	ReadyTimeout time.Duration
	// ShutdownTimeout is how long a child has to exit after SIGTERM before its
	// process group gets SIGKILL (default 30s). Each phase of a stop (workers,
	// then the agent) gets it once, the workers of a phase in parallel.
	ShutdownTimeout time.Duration
	// Prepare runs before each child starts (mint a credential). It returns
	// extra env for the child, a func called with the pid right after the
	// child started (bind the id) and a func called after the child has exited
	// and been reaped (revoke). Either func may be nil. exited is also called
	// when the start fails after Prepare succeeded. An error counts as a failed
	// start. Prepare may be called from several goroutines at once.
	Prepare func(role string) (env []string, started func(pid int), exited func(), err error)
	// OnAllReady is called once, from Run, after the agent and every worker
	// first became ready (the master broadcasts yolk-ready). It should not block.
	OnAllReady func()
	// Output receives each line a child writes on stderr or stdout, without
	// the newline. It is called from one goroutine per child stream, so it must
	// be safe for concurrent use. It may call Ready and Status.
	Output func(role string, pid int, line []byte)
	// Logger gets the supervisor's own records (keys role, pid, err, restarts).
	// Nil means slog.Default().
	Logger *slog.Logger

	// StableAfter: a child that had been ready this long when it exited
	// (default DefaultStableAfter) is restarted at once, and its backoff and
	// crash count start over. Backoff is for a child that exits before it is
	// ready or sooner after.
	StableAfter time.Duration
	// BackoffMin is the first restart delay (default 100ms); each quick exit
	// doubles it up to BackoffMax (default 30s). Each wait is the delay minus
	// a random 0 to 20%.
	BackoffMin, BackoffMax time.Duration
	// BackoffReset: a child that stayed up this long (default 1m), but was not
	// ready for StableAfter, waits BackoffMin and its crash count starts over.
	BackoffReset time.Duration
	// CrashLoopExits is how many quick exits in a row (before ready, or less
	// than StableAfter after it) make a crash loop (default 3). A crash loop is logged at Error with the child's last
	// stderr lines; the child is still restarted.
	CrashLoopExits int
	// QuitTimeout is how long a child stopped with StopQuit (see Replace) has
	// to write its goroutine dump and exit after SIGQUIT before its process
	// group gets SIGKILL (default 2s).
	QuitTimeout time.Duration
}

// DefaultStableAfter is Config.StableAfter's default. A child killed after a
// second of service is replaced at once; one that keeps dying within a second
// of its ready is a crash loop and backs off.
const DefaultStableAfter = time.Second

// ChildStatus is one supervised child as Status sees it.
type ChildStatus struct {
	Role     string
	Slot     int // a worker's place, 0 to Workers-1, kept by its restarts and its replacement in a Reload; 0 for the agent
	PID      int // 0 while in backoff or before the process started
	State    string
	Started  time.Time // when the current process started; zero with PID 0
	Restarts int       // restarts after exits since this child slot was created (Reload makes new slots)
}

// States reported in ChildStatus.State.
const (
	StateStarting = "starting" // started (or about to), not ready yet
	StateReady    = "ready"
	StateStopping = "stopping" // SIGTERM sent, waiting for it to exit
	StateBackoff  = "backoff"  // exited, waiting before the restart
)

// Errors returned by Run and Reload.
var (
	// ErrKilled is returned by Run after Kill.
	ErrKilled = errors.New("supervisor: children killed")
	// ErrReloading is returned by Reload and Replace while a Reload runs.
	ErrReloading = errors.New("supervisor: a reload is already running")
	// ErrReplacing is returned by Replace while another Replace runs (Reload
	// waits for it).
	ErrReplacing = errors.New("supervisor: a child is being replaced")
	// ErrNotRunning is returned by Reload and Replace before every child
	// first became ready, while stopping and after Run returned.
	ErrNotRunning = errors.New("supervisor: not running")
	// ErrNoChild is returned by Replace for a pid that is not a live child.
	ErrNoChild = errors.New("supervisor: no such child")
)

// errStopped means a start or a wait was cut short by a stop; it never leaves the package.
var errStopped = errors.New("supervisor: stopping")

const (
	phaseIdle = iota
	phaseRunning
	phaseDone
)

// Supervisor runs the agent and the workers. Create it with New, run it once
// with Run; Ready, Status, Reload and Kill are safe for concurrent use from
// any goroutine while Run runs.
type Supervisor struct {
	cfg       Config
	log       *slog.Logger
	pdeathsig syscall.Signal // SIGKILL; tests of the lifeline turn it off

	killCh   chan struct{}
	killOnce sync.Once
	wg       sync.WaitGroup // slot goroutines and reapers

	mu       sync.Mutex    // guards everything below and every slot's mutable fields
	busy     error         // ErrReloading or ErrReplacing while Reload or Replace runs, else nil
	idle     chan struct{} // closed when busy goes back to nil
	phase    int
	allReady bool
	stopping bool
	killed   bool
	lifeR    *os.File // lifeline read end, fd 3 of every child
	lifeW    *os.File // lifeline write end: only the master holds it
	agent    *slot
	workers  []*slot
	children map[int]*child // every started, not yet reaped child by pid
}

// New returns a Supervisor for cfg with defaults filled in. It starts nothing.
func New(cfg Config) *Supervisor {
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	setDefault(&cfg.ReadyTimeout, 30*time.Second)
	setDefault(&cfg.ShutdownTimeout, 30*time.Second)
	setDefault(&cfg.BackoffMin, 100*time.Millisecond)
	setDefault(&cfg.BackoffMax, 30*time.Second)
	setDefault(&cfg.BackoffReset, time.Minute)
	setDefault(&cfg.StableAfter, DefaultStableAfter)
	setDefault(&cfg.QuitTimeout, 2*time.Second)
	if cfg.CrashLoopExits <= 0 {
		cfg.CrashLoopExits = 3
	}
	if cfg.Agent.Role == "" {
		cfg.Agent.Role = "agent"
	}
	if cfg.Worker.Role == "" {
		cfg.Worker.Role = "worker"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Supervisor{
		cfg:       cfg,
		log:       log,
		pdeathsig: syscall.SIGKILL,
		killCh:    make(chan struct{}),
		children:  make(map[int]*child),
	}
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// Run starts the agent, waits until it is ready, starts the workers, waits
// until all are ready, calls OnAllReady and supervises until ctx is done or
// Kill is called. Then it stops the workers, then the agent (SIGTERM to each
// child's process group, SIGKILL after ShutdownTimeout), and returns once
// every child is reaped: nil after a clean stop, ErrKilled after Kill, or an
// error naming the child, why it failed and its last stderr lines when the
// agent or a worker could not start. Run may be called once.
func (s *Supervisor) Run(ctx context.Context) error {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end()
	err := s.startAll(ctx)
	if err == nil {
		s.mu.Lock()
		s.allReady = true
		s.mu.Unlock()
		s.log.Info("all children ready", "workers", s.cfg.Workers)
		if s.cfg.OnAllReady != nil {
			s.cfg.OnAllReady()
		}
		select {
		case <-ctx.Done():
		case <-s.killCh:
		}
	}
	s.shutdown()
	s.mu.Lock()
	killed := s.killed
	s.mu.Unlock()
	switch {
	case err != nil && !errors.Is(err, errStopped):
		return err
	case killed:
		return ErrKilled
	}
	return nil
}

func (s *Supervisor) begin() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.phase != phaseIdle {
		return errors.New("supervisor: Run called twice")
	}
	if s.cfg.Agent.Path == "" || s.cfg.Worker.Path == "" {
		return errors.New("supervisor: agent and worker need a Path")
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("lifeline pipe: %w", err)
	}
	s.lifeR, s.lifeW = r, w
	s.phase = phaseRunning
	return nil
}

// end runs after every child is reaped: closing the write end now tells
// nobody anything, but keeps fds from leaking.
func (s *Supervisor) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifeR.Close()
	s.lifeW.Close()
	s.phase = phaseDone
}

// startAll starts the agent, then the workers in parallel, and waits until
// all are ready. It returns errStopped when ctx is done or Kill was called.
func (s *Supervisor) startAll(ctx context.Context) error {
	first := make(chan error, 1)
	if s.spawn(&s.cfg.Agent, nil, first) == nil {
		return errStopped
	}
	if err := s.awaitFirst(ctx, first); err != nil {
		return startError(s.cfg.Agent.Role, err)
	}
	first = make(chan error, s.cfg.Workers)
	for range s.cfg.Workers {
		if s.spawn(&s.cfg.Worker, nil, first) == nil {
			return errStopped
		}
	}
	for range s.cfg.Workers {
		if err := s.awaitFirst(ctx, first); err != nil {
			return startError(s.cfg.Worker.Role, err)
		}
	}
	return nil
}

func startError(role string, err error) error {
	if errors.Is(err, errStopped) {
		return err
	}
	return fmt.Errorf("start %s: %w", role, err)
}

func (s *Supervisor) awaitFirst(ctx context.Context, first <-chan error) error {
	select {
	case err := <-first:
		return err
	case <-ctx.Done():
		return errStopped
	case <-s.killCh:
		return errStopped
	}
}

// shutdown stops every worker slot in parallel, then the agent, and waits
// for every goroutine. No slot can be added once stopping is set.
func (s *Supervisor) shutdown() {
	s.mu.Lock()
	s.stopping = true
	workers := slices.Clone(s.workers)
	agent := s.agent
	s.mu.Unlock()
	if len(workers) > 0 {
		s.log.Info("stopping workers", "count", len(workers))
	}
	for _, w := range workers {
		w.retireNow()
	}
	for _, w := range workers {
		<-w.done
	}
	if agent != nil {
		s.log.Info("stopping agent")
		agent.retireNow()
		<-agent.done
	}
	s.wg.Wait()
}

// Ready records that the child with that pid is ready (its ready event
// arrived on the bus). An unknown pid is ignored. Safe for concurrent use.
func (s *Supervisor) Ready(pid int) {
	s.mu.Lock()
	c := s.children[pid]
	s.mu.Unlock()
	if c == nil {
		s.log.Debug("ready from an unknown pid", "pid", pid)
		return
	}
	c.markReady()
}

// Status returns the agent first, then the workers in order; during a
// Reload a new worker appears next to the one it replaces.
func (s *Supervisor) Status() []ChildStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	slots := s.workers
	if s.agent != nil {
		slots = append([]*slot{s.agent}, slots...)
	}
	out := make([]ChildStatus, 0, len(slots))
	for _, sl := range slots {
		st := ChildStatus{Role: sl.spec.Role, Slot: sl.index, State: sl.state, Restarts: sl.restarts}
		if sl.cur != nil {
			st.PID, st.Started = sl.cur.pid, sl.cur.started
		}
		out = append(out, st)
	}
	return out
}

// Kill sends SIGKILL to every child's process group at once and makes Run
// stop without restarting anything and return ErrKilled as soon as every
// child is reaped. Use it on a second signal. Safe to call more than once.
func (s *Supervisor) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopping, s.killed = true, true
	s.killOnce.Do(func() { close(s.killCh) })
	if s.agent != nil {
		s.agent.retireNow()
	}
	for _, w := range s.workers {
		w.retireNow()
	}
	for pid := range s.children {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	if len(s.children) > 0 {
		s.log.Warn("killed every child", "count", len(s.children))
	}
}
