package yolk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nats-io/nats.go"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/internal/cli"
	"github.com/yolkgo/yolk/internal/inflight"
	"github.com/yolkgo/yolk/internal/lifeline"
	"github.com/yolkgo/yolk/internal/masterapi"
	"github.com/yolkgo/yolk/internal/metrics"
	"github.com/yolkgo/yolk/internal/serve"
	"github.com/yolkgo/yolk/prom"
	"github.com/yolkgo/yolk/schedule"
)

type agentConfig struct {
	cli.Child
	AgentSecret string `env:"YOLK_AGENT_SECRET" help:"external mode: the agent's bus secret; the bus user is agent (required; never printed)"`
}

type workerConfig struct {
	cli.Child
	WorkerSecret string        `env:"YOLK_WORKER_SECRET" help:"external mode: the workers' bus secret; the bus user is worker (required; never printed)"`
	HTTPAddr     string        `env:"YOLK_HTTP_ADDR" envDefault:":7001" help:"HTTP address (fork mode: the socket comes from the master; external mode: bound with SO_REUSEPORT once ready)"`
	ListenFD     int           `env:"YOLK_LISTEN_FD" help:"inherited listening socket (set by the master)"`
	HangTimeout  time.Duration `env:"YOLK_HANG_TIMEOUT" envDefault:"10s" help:"HTTP requests in flight of which none progressed (completed, wrote or flushed) this long make the worker stalled: its heartbeat says so and its /healthz answers 503, and the master replaces it; at least 1s; 0: off"`
}

// parseChild reads and checks a child's config: the agent's or a worker's.
func parseChild(role Role, environ []string) (workerConfig, error) {
	if role == RoleAgent {
		c, err := cli.Parse[agentConfig](environ)
		if err != nil {
			return workerConfig{}, err
		}
		err = c.Check(bus.RoleAgent, "YOLK_AGENT_SECRET", c.AgentSecret)
		return workerConfig{Child: c.Child}, err
	}
	c, err := cli.Parse[workerConfig](environ)
	if err != nil {
		return c, err
	}
	// checked now, not when the worker listens (once ready, maybe never)
	if err := cli.CheckHostPort(c.HTTPAddr); err != nil {
		return c, cli.BadValue("YOLK_HTTP_ADDR", c.HTTPAddr, "%v", err)
	}
	if c.HangTimeout < 0 || c.HangTimeout > 0 && c.HangTimeout < cli.MinHangTimeout {
		return c, cli.BadValue("YOLK_HANG_TIMEOUT", c.HangTimeout.String(), "want 0 (off) or at least %s", cli.MinHangTimeout)
	}
	if c.ListenFD < 0 || (c.ListenFD > 0 && !serve.IsListener(c.ListenFD)) {
		return c, cli.BadValue("YOLK_LISTEN_FD", strconv.Itoa(c.ListenFD), "not an inherited listening socket (the master sets it)")
	}
	return c, c.Check(bus.RoleWorker, "YOLK_WORKER_SECRET", c.WorkerSecret)
}

const agentSynopsis = `
%[1]s: the agent, the service's one process for background duties: the
schedule timers, and the application's agent part.

Usage:
  %[1]s
      connect to the bus and run (started by the master in fork mode; in external
      mode by the platform: it logs in as user agent with YOLK_AGENT_SECRET, and
      waits for the master)
  %[1]s healthcheck [--ready]
      ask the running agent over YOLK_HEALTH_SOCKET: GET /healthz (alive), or
      /readyz (reported ready); exit 0 on 200, else 1
  %[1]s --help
      this text`

const workerSynopsis = `
%[1]s: a worker: serves the application on the shared HTTP port and runs its
schedule tasks and messenger handlers.

Usage:
  %[1]s
      connect to the bus and serve (started by the master in fork mode; in external
      mode by the platform: it binds YOLK_HTTP_ADDR with SO_REUSEPORT, logs in as
      user worker with YOLK_WORKER_SECRET, and waits for the master)
  %[1]s healthcheck [--ready]
      ask the running worker over YOLK_HEALTH_SOCKET: GET /healthz (alive), or
      /readyz (ready and reported to the master); exit 0 on 200, else 1
  %[1]s --help
      this text`

// runChild runs the agent or a worker of app; cmd is how it was invoked, for --help.
func runChild(ctx context.Context, app App, role Role, cmd string, args, environ []string, stdout, stderr io.Writer) error {
	if cli.WantsHelp(args) {
		synopsis, cfg := workerSynopsis, any(workerConfig{})
		if role == RoleAgent {
			synopsis, cfg = agentSynopsis, agentConfig{}
		}
		cli.Usage(stdout, fmt.Sprintf(synopsis, cmd), cfg)
		cli.AppUsage(stdout, app.About, app.Config)
		return nil
	}
	if len(args) > 0 && args[0] == "healthcheck" {
		return cli.HealthcheckCommand(ctx, args[1:], environ, stdout)
	}
	if len(args) > 0 {
		return cli.Usagef("unknown command %q (try --help)", args[0])
	}
	cfg, err := parseChild(role, environ)
	if err != nil {
		return err
	}
	if err := parseAppConfig(app.Config, environ); err != nil {
		return err
	}
	log, err := cfg.NewLogger(stderr, slog.String("proc", string(role)), slog.String("id", cfg.ID))
	if err != nil {
		return err
	}
	c := &child{app: app, role: role, cfg: cfg, log: log}
	if !cfg.External() {
		// In external mode nothing exits because the master is gone: the process
		// keeps serving and waits for it (a nil channel never fires).
		c.lifeline = lifeline.Watch(environ)
	}
	return c.run(ctx)
}

// child is the runtime of one agent or worker.
type child struct {
	app      App
	role     Role
	cfg      workerConfig
	log      *slog.Logger
	lifeline <-chan struct{}
	stall    *stallWatch // a worker's; nil for the agent, or with YOLK_HANG_TIMEOUT=0
	fast     *serve.Fast // a worker's fast path, if it has one

	warm     atomic.Bool // the BeforeReady hooks are done
	svcSeen  atomic.Bool // the master said the whole service is ready
	svcOnce  sync.Once
	mu       sync.Mutex       // serialises stopping with starting hooks
	stopping atomic.Bool      // the process stops: no hook starts any more
	hooks    sync.WaitGroup   // the OnServiceReady hooks under way
	handOns  inflight.Counter // schedule runs a stopping worker passes on (acceptRuns)

	// What the heartbeat tells of the schedules: the agent's timers, or a
	// worker's runs; nil until set up.
	sched  atomic.Pointer[schedule.Scheduler]
	runner atomic.Pointer[schedule.Runner]
}

// fleet is the host's fleet, zero on a single host.
func (c *child) fleet() cli.Fleet {
	if !c.cfg.Fleet.On() {
		return cli.Fleet{}
	}
	return c.cfg.Fleet
}

// markStopping says the process stops: readiness fails, and no
// OnServiceReady hook starts from now on.
func (c *child) markStopping() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopping.Store(true)
}

// run is the process's life: see Process.
func (c *child) run(ctx context.Context) error {
	p := &Process{Log: c.log, role: c.role, reported: make(chan struct{}), states: make(chan State, 1),
		fleet: c.cfg.Fleet, stores: c.app.Stores, metrics: newMetrics()}
	if c.role == RoleWorker {
		c.stall = newStallWatch(c.cfg.HangTimeout)
	}
	stopHealth, err := c.cfg.StartHealthChecks(cli.HealthChecks{Live: c.stall.err, Ready: func() error {
		switch {
		case c.stopping.Load():
			return errors.New("stopping")
		case !c.warm.Load():
			return errors.New("the BeforeReady hooks are not done yet")
		case !isClosed(p.reported):
			return errors.New("not reported ready to the master yet")
		}
		return nil
	}}, c.log)
	if err != nil {
		return err
	}
	defer stopHealth()
	defer c.markStopping() // runs first: not ready while stopping

	reconnected := make(chan struct{}, 1)
	conn, err := bus.Dial(ctx, bus.Options{
		URL: c.cfg.URL, User: c.cfg.User, Password: c.cfg.Secret,
		ID: c.cfg.ID, Role: bus.Role(c.role), Logger: c.log,
		Host: c.fleet().Host, Domain: c.fleet().Domain,
		OnReconnect: func() {
			p.reconnected()
			select { // a restarted master knows nobody: tell it again (external mode)
			case reconnected <- struct{}{}:
			default:
			}
		},
		OnError: func(err error) {
			if errors.Is(err, nats.ErrSlowConsumer) {
				p.reconnected() // messages were dropped: catch up
			}
		},
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for the bus
		}
		return err
	}
	defer conn.Close()
	p.conn = conn

	// The Go functions live from setup to the end of the BeforeClose hooks,
	// whatever stops the process: their context is not the signal's.
	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()
	g, gctx := errgroup.WithContext(runCtx)
	defer c.hooks.Wait()

	handler, err := c.setup(runCtx, p)
	if err != nil {
		return err
	}
	handler = c.stall.wrap(withFaults(handler, c.log))
	sched, runner, err := c.schedules(p)
	if err != nil {
		c.beforeClose(context.Background(), p)
		return err
	}
	c.sched.Store(sched)
	c.runner.Store(runner)
	// Schedule runs have a context of their own: they end before the BeforeClose hooks.
	runsCtx, cancelRuns := context.WithCancel(runCtx)
	defer cancelRuns()
	for _, f := range p.runs {
		g.Go(func() error {
			err := f(gctx)
			if err != nil && runCtx.Err() != nil && errors.Is(err, context.Canceled) {
				return nil // stopped, as asked
			}
			return err
		})
	}
	g.Go(func() error { reportStates(gctx, conn, p.states, c.log); return nil })

	reason := c.beforeReady(ctx, gctx, conn, p)
	if reason == nil && ctx.Err() == nil && gctx.Err() != nil {
		reason = fmt.Errorf("a part of the %s stopped before it was ready", c.role)
	}
	var srv *serve.Server
	var ln net.Listener
	served := make(chan error, 1)
	if reason == nil && ctx.Err() == nil && c.role == RoleWorker {
		// Listen only once ready: the socket is shared (by the master, or with
		// SO_REUSEPORT), so a worker that accepted earlier would hold connections
		// it cannot answer yet during a start or a reload.
		ln, err = serve.Listen(c.cfg.ListenFD, c.cfg.HTTPAddr, c.log)
		if err != nil {
			reason = err
		} else {
			srv = serve.NewServer(handler, c.log)
			srv.Fast = c.fast
			go func() { served <- srv.Serve(ln) }()
		}
	}
	if reason == nil && ctx.Err() == nil {
		reason = c.report(ctx, g, gctx, conn, p, reconnected, ln)
	}
	if reason == nil && ctx.Err() == nil {
		if sched != nil {
			g.Go(func() error { return sched.Run(gctx) })
		}
		if runner != nil {
			// Only now: a run sent to a worker that is not ready goes to another.
			reason = c.acceptRuns(runsCtx, p, runner)
		}
	}
	if reason == nil && ctx.Err() == nil {
		reason = c.wait(ctx, gctx, conn, served)
	}
	if ctx.Err() != nil && reason == nil {
		c.log.Info("stopping")
	}
	err = c.stop(p, srv, ln, served, func() {
		cancelRuns()
		if runner != nil {
			runner.Wait()
		}
	})
	cancelRun()
	return errors.Join(reason, err, g.Wait())
}

// setup registers the runtime's handlers and calls the application's setup.
func (c *child) setup(ctx context.Context, p *Process) (http.Handler, error) {
	on := func(event string, h bus.Handler) error { return p.conn.On(event, h) }
	if err := p.conn.OnInline(masterapi.EventPing, func(context.Context, bus.Message) (any, error) { return c.heartbeat(p), nil }); err != nil {
		return nil, err
	}
	if err := on(masterapi.EventMetrics, p.exposition); err != nil {
		return nil, err
	}
	if err := on(masterapi.EventServiceReady, func(context.Context, bus.Message) (any, error) {
		c.serviceReady(ctx, p)
		return nil, nil
	}); err != nil {
		return nil, err
	}
	var handler http.Handler = notFound
	var err error
	switch c.role {
	case RoleAgent:
		if c.app.Agent != nil {
			err = c.app.Agent(&Agent{Process: p})
		}
	default:
		w := &Worker{Process: p}
		if c.app.Worker != nil {
			err = c.app.Worker(w)
		}
		if w.handler != nil {
			handler = w.handler
		}
		var ok2xx *prom.Histogram
		handler, ok2xx = metrics.Instrument(p.metrics, handler)
		if w.fast != nil {
			c.fast = &serve.Fast{Lookup: w.fast, Answered: func(d time.Duration) { ok2xx.Observe(d.Seconds()) }}
		}
	}
	p.seal()
	if err != nil {
		return nil, fmt.Errorf("set up the %s: %w", c.role, err)
	}
	return handler, nil
}

// schedules prepares the application's schedules: the agent's timers, or a
// worker's tasks. Both check every schedule, so that a bad one stops the
// service at its first start.
func (c *child) schedules(p *Process) (*schedule.Scheduler, *schedule.Runner, error) {
	var schedules []Schedule
	if c.app.Schedules != nil {
		schedules = c.app.Schedules()
	}
	specs := make([]schedule.Spec, len(schedules))
	runner := schedule.NewRunner(c.log)
	for i, s := range schedules {
		if s.Task == nil {
			return nil, nil, fmt.Errorf("schedule %q has no task", s.Name)
		}
		if err := runner.Handle(s.Spec, s.Task); err != nil {
			return nil, nil, err
		}
		specs[i] = s.Spec
	}
	if c.role == RoleAgent {
		cluster, err := newClusterRuns(p, specs, c.log)
		if err != nil {
			return nil, nil, err
		}
		sched, err := schedule.NewScheduler(specs, dispatcher(p.conn, cluster, c.log), c.log)
		return sched, nil, err
	}
	return nil, runner, nil
}

// acceptRuns has a worker take the schedule runs the agent sends, and run
// them in runner with ctx.
func (c *child) acceptRuns(ctx context.Context, p *Process, runner *schedule.Runner) error {
	return p.conn.On(eventSchedule, func(_ context.Context, m bus.Message) (any, error) {
		var r schedule.Run
		if err := m.Decode(&r); err != nil {
			return nil, fmt.Errorf("bad schedule run from %s: %w", m.From, err)
		}
		err := runner.Dispatch(ctx, r)
		if errors.Is(err, schedule.ErrStopped) && r.Type != schedule.All {
			// Acknowledged as this worker began to stop, before it refused
			// runs: another worker takes it (this one now refuses it).
			c.handOns.Add()
			go func() {
				defer c.handOns.Done()
				c.handOn(p.conn, r)
			}()
			return nil, nil
		}
		if err != nil {
			c.log.Warn("schedule run not started", "schedule", r.Name, "seq", r.Seq, "err", err)
		}
		return nil, nil
	})
}

// handOnTimeout bounds the hand-on of a run a stopping worker took: in a
// rolling reload a ready worker takes it at once; when every worker stops,
// none will, and the stop should not wait long for that.
const handOnTimeout = 500 * time.Millisecond

// handOn sends run, which this stopping worker can no longer start, to one
// of the other workers.
func (c *child) handOn(conn *bus.Conn, run schedule.Run) {
	ctx, cancel := context.WithTimeout(context.Background(), handOnTimeout)
	defer cancel()
	if err := conn.SendRandom(ctx, eventSchedule, run); err != nil {
		c.log.Warn("schedule run lost: this worker stopped, and no other took it", "schedule", run.Name, "seq", run.Seq, "err", err)
		return
	}
	c.log.Info("schedule run handed on: this worker stopped", "schedule", run.Name, "seq", run.Seq)
}

// beforeReady runs the BeforeReady hooks, bounded by YOLK_READY_TIMEOUT, and
// returns why the process must stop instead, if it must. A stop request
// (ctx) cancels the hooks and returns nil.
func (c *child) beforeReady(ctx, gctx context.Context, conn *bus.Conn, p *Process) error {
	rctx, cancel := context.WithTimeout(gctx, c.cfg.ReadyTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	done := make(chan error, 1)
	go func() { // waited for below, whatever happens
		for _, f := range p.beforeReady {
			if err := f(rctx); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	var reason error
	select {
	case err := <-done:
		switch {
		case err == nil:
			c.warm.Store(true)
			return nil
		case ctx.Err() != nil || gctx.Err() != nil:
			return nil // stopping; gctx's error is g's
		case errors.Is(err, context.DeadlineExceeded) && rctx.Err() != nil:
			return fmt.Errorf("before ready: not done in YOLK_READY_TIMEOUT (%s): %w", c.cfg.ReadyTimeout, err)
		}
		return fmt.Errorf("before ready: %w", err)
	case <-ctx.Done():
	case <-gctx.Done():
	case <-c.lifeline:
		reason = errors.New("the master is gone; exiting")
	case <-conn.Done():
		reason = errors.New("bus connection closed")
	}
	cancel()
	<-done
	return reason
}

// report tells the master this process is ready: once, bounded by
// YOLK_READY_TIMEOUT, in fork mode; in external mode now and after every
// reconnect, until it hears (it may be restarting). It returns why the process
// must stop instead, if it must.
func (c *child) report(ctx context.Context, g *errgroup.Group, gctx context.Context, conn *bus.Conn, p *Process, again <-chan struct{}, ln net.Listener) error {
	send := func(ctx context.Context) error {
		m, err := conn.RequestMaster(ctx, masterapi.EventReady, masterapi.Ready{Wire: bus.WireVersion})
		if re := (*bus.RemoteError)(nil); errors.As(err, &re) && strings.HasPrefix(re.Message, masterapi.Refused) {
			return fmt.Errorf("%w: %s", errRefused, strings.TrimPrefix(re.Message, masterapi.Refused))
		}
		if err != nil {
			return err
		}
		var r masterapi.ReadyReply
		if len(m.Data) > 0 && m.Decode(&r) == nil {
			if r.ServiceReady {
				c.svcSeen.Store(true)
			}
			// What every process reads; an older master says nothing: 1.
			_ = conn.SetWire(min(max(r.Wire, 1), bus.WireVersion)) // in range: no error
		}
		return nil
	}
	reported := func() {
		if !isClosed(p.reported) {
			close(p.reported)
			attrs := []any{}
			if ln != nil {
				attrs = append(attrs, "addr", ln.Addr().String())
			}
			c.log.Info(string(c.role)+" ready", attrs...)
		} else {
			p.reportAgain() // a restarted master knows no state either
		}
		if c.svcSeen.Load() {
			c.serviceReady(gctx, p) // at most once: the broadcast may have been lost
		}
	}
	if c.cfg.External() {
		g.Go(func() error { return announce(gctx, send, again, c.cfg.ReadyTimeout, c.log, reported) })
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.ReadyTimeout)
	defer cancel()
	if err := send(rctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("report ready: %w", err)
	}
	reported()
	g.Go(func() error { // after a reconnect, ask again: a broadcast may have been lost
		select {
		case <-gctx.Done():
			return nil
		case <-again:
		}
		return announce(gctx, send, again, c.cfg.ReadyTimeout, c.log, reported)
	})
	return nil
}

// errRefused: the master will not have this process in the service.
var errRefused = errors.New("the master refused this process")

// serviceReady runs the OnServiceReady hooks, once, if this process has
// reported ready; else report does when it has.
func (c *child) serviceReady(ctx context.Context, p *Process) {
	c.svcSeen.Store(true)
	if !isClosed(p.reported) {
		return
	}
	c.svcOnce.Do(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.stopping.Load() {
			return
		}
		if c.role == RoleAgent {
			c.log.Info("every process is ready")
		}
		for _, f := range p.serviceReady {
			c.hooks.Go(func() { f(ctx) })
		}
	})
}

// wait returns when the process must stop: nil for a stop request, else why.
func (c *child) wait(ctx, gctx context.Context, conn *bus.Conn, served chan error) error {
	select {
	case <-ctx.Done():
		return nil
	case <-gctx.Done():
		return fmt.Errorf("a part of the %s stopped", c.role)
	case <-c.lifeline:
		return errors.New("the master is gone; exiting")
	case <-conn.Done():
		return errors.New("bus connection closed")
	case err := <-served:
		served <- err // kept for stop
		return fmt.Errorf("serve: %w", err)
	}
}

// stop stops the process in order: it takes no more schedule runs, then a
// worker's HTTP stops (queued connections go to the other workers, accepted ones
// are finished), the schedule runs under way end (endRuns), and the BeforeClose
// hooks run. The drain and the hooks share YOLK_SHUTDOWN_TIMEOUT; the caller
// then ends the Go functions.
func (c *child) stop(p *Process, srv *serve.Server, ln net.Listener, served chan error, endRuns func()) error {
	c.markStopping()
	// Unhandled, a run sent now is refused, and the agent sends it to another worker.
	_ = p.conn.On(eventSchedule, nil)
	_ = p.conn.On(masterapi.EventServiceReady, nil)
	sctx, cancel := context.WithTimeout(context.Background(), c.cfg.ShutdownTimeout)
	defer cancel()
	var err error
	if ln != nil {
		ln.Close()
	}
	if srv != nil {
		<-served
		if derr := srv.Drain(sctx); derr != nil {
			err = fmt.Errorf("shutdown: %w", derr)
		}
	}
	endRuns()
	<-c.handOns.Idle() // while the bus connection is open
	c.beforeClose(sctx, p)
	return err
}

// beforeClose runs the BeforeClose hooks, the last registered first.
func (c *child) beforeClose(ctx context.Context, p *Process) {
	for _, f := range slices.Backward(p.beforeClose) {
		if err := f(ctx); err != nil {
			c.log.Error("before close", "err", err)
		}
	}
}

// dispatcher sends each schedule run over the bus: a Worker run to one worker
// chosen by the bus, an All run to every worker, a Cluster run to one worker
// if this host claimed its tick (on a single host, cluster is nil: as Worker).
func dispatcher(conn *bus.Conn, cluster *clusterRuns, log *slog.Logger) func(context.Context, schedule.Run) {
	return func(ctx context.Context, r schedule.Run) {
		if r.Type == schedule.Cluster && cluster != nil && !cluster.claim(ctx, &r) {
			return
		}
		var err error
		switch r.Type {
		case schedule.All:
			err = conn.SendToApp(eventSchedule, r)
		default:
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = conn.SendRandom(sctx, eventSchedule, r)
			cancel()
		}
		if err != nil {
			log.Error("dispatch schedule run", "schedule", r.Name, "seq", r.Seq, "err", err)
			return
		}
		log.Debug("schedule run dispatched", "schedule", r.Name, "seq", r.Seq, "type", r.Type.String(), "fence", r.Fence)
	}
}

// reportStates sends each new State to the master, the newest first, retrying
// until it is delivered or a newer one replaces it.
func reportStates(ctx context.Context, conn *bus.Conn, states <-chan State, log *slog.Logger) {
	var pending State
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case pending = <-states:
		case <-retry:
		}
		retry = nil
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := conn.SendToMaster(sctx, masterapi.EventState, masterapi.State(pending))
		cancel()
		if err != nil && ctx.Err() == nil {
			log.Debug("report state to the master; retrying", "err", err)
			retry = time.After(time.Second)
		}
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
