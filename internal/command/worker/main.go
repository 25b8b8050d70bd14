// Package worker is the worker command, a yolk worker: it serves the HTTP API on the shared port and
// answers events on the bus. It is normally started by the master.
package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/cache"
	"github.com/yolkgo/yolk/internal/cli"
	"github.com/yolkgo/yolk/schedule"
	"github.com/yolkgo/yolk/supervisor"
)

const synopsis = `
worker: a yolk worker: serves the data set from its memory cache on the shared
HTTP port (GET /data, /data/{key}, /metrics, /healthz, /readyz) and keeps the
cache fresh with the agent (push, pull_refresh, force_refresh).

Usage:
  worker          connect to the bus and serve (started by the master in fork mode; in
                  external mode by the platform: it binds YOLK_HTTP_ADDR with SO_REUSEPORT,
                  logs in as user worker with YOLK_WORKER_SECRET, and waits for the master)
  worker healthcheck [--ready]
                  ask the running worker over YOLK_HEALTH_SOCKET: GET /healthz (alive), or
                  /readyz (warm cache, reported ready); exit 0 on 200, else 1
  worker --help   this text`

type config struct {
	cli.Deploy
	cli.Bus
	WorkerSecret string `env:"YOLK_WORKER_SECRET" help:"external mode: the workers' bus secret; the bus user is worker (required; never printed)"`
	cli.Refresh
	HTTPAddr        string        `env:"YOLK_HTTP_ADDR" envDefault:":7001" help:"HTTP address (fork mode: the socket comes from the master; external mode: bound with SO_REUSEPORT once the cache is warm)"`
	ListenFD        int           `env:"YOLK_LISTEN_FD" help:"inherited listening socket (set by the master)"`
	ReadyTimeout    time.Duration `env:"YOLK_READY_TIMEOUT" envDefault:"30s" help:"how long to try to report ready (external mode: each try; it tries until it succeeds)"`
	ShutdownTimeout time.Duration `env:"YOLK_SHUTDOWN_TIMEOUT" envDefault:"30s" help:"how long in-flight requests may take to finish on stop"`
	cli.Logging
}

// Main runs the command with the process's arguments, environment and stdio, and
// exits: 0 after a clean stop, 2 for a usage error, 1 otherwise.
func Main() { cli.Main("worker", run) }

// parseConfig reads and checks the config, and fills the bus login: the one the
// master set (fork mode), or user worker with the role secret (external mode).
func parseConfig(environ []string) (config, error) {
	cfg, err := cli.Parse[config](environ)
	if err != nil {
		return cfg, err
	}
	if err := cfg.Logging.Validate(); err != nil {
		return cfg, err
	}
	if err := cfg.Refresh.Validate(); err != nil {
		return cfg, err
	}
	// checked now, not when the worker listens (once its cache is warm, maybe never)
	if err := cli.CheckHostPort(cfg.HTTPAddr); err != nil {
		return cfg, cli.BadValue("YOLK_HTTP_ADDR", cfg.HTTPAddr, "%v", err)
	}
	if cfg.ListenFD < 0 || (cfg.ListenFD > 0 && !isListener(cfg.ListenFD)) {
		return cfg, cli.BadValue("YOLK_LISTEN_FD", strconv.Itoa(cfg.ListenFD), "not an inherited listening socket (the master sets it)")
	}
	if cfg.ShutdownTimeout <= 0 {
		return cfg, cli.BadValue("YOLK_SHUTDOWN_TIMEOUT", cfg.ShutdownTimeout.String(), "must be positive")
	}
	return cfg, cfg.Join(&cfg.Bus, bus.RoleWorker, "YOLK_WORKER_SECRET", cfg.WorkerSecret, cfg.ReadyTimeout)
}

// isListener reports whether fd is an open socket that listens.
func isListener(fd int) bool {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return false
	}
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	return err == nil && v == 1
}

func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	if cli.WantsHelp(args) {
		cli.Usage(stdout, synopsis, config{})
		return nil
	}
	if len(args) > 0 && args[0] == "healthcheck" {
		return cli.HealthcheckCommand(ctx, args[1:], environ, stdout)
	}
	if len(args) > 0 {
		return cli.Usagef("unknown command %q (try --help)", args[0])
	}
	cfg, err := parseConfig(environ)
	if err != nil {
		return err
	}
	log, err := cfg.NewLogger(stderr, slog.String("proc", "worker"), slog.String("id", cfg.ID))
	if err != nil {
		return err
	}
	var isWarm, reported, stopping atomic.Bool
	stopHealth, err := cfg.StartHealth(func() error {
		switch {
		case stopping.Load():
			return errors.New("stopping")
		case !isWarm.Load():
			return errors.New("the cache is not warm yet")
		case !reported.Load():
			return errors.New("not reported ready to the master yet")
		}
		return nil
	}, log)
	if err != nil {
		return err
	}
	defer stopHealth()
	defer stopping.Store(true) // runs first: not ready while draining

	var replica atomic.Pointer[cache.Replica]
	reconnected := make(chan struct{}, 1)
	conn, err := bus.Dial(ctx, bus.Options{
		URL: cfg.URL, User: cfg.User, Password: cfg.Secret,
		ID: cfg.ID, Role: bus.RoleWorker, Logger: log,
		OnReconnect: func() {
			if r := replica.Load(); r != nil {
				r.Reconnected()
			}
			select { // a restarted master knows nobody: tell it again (external mode)
			case reconnected <- struct{}{}:
			default:
			}
		},
		OnError: func(error) {
			// a slow consumer may have lost a refresh: catch up (a request, cheap)
			if r := replica.Load(); r != nil {
				r.Reconnected()
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

	var store cache.Store
	metrics := cache.NewMetrics(cfg.ID)
	rep := cache.NewReplica(conn, cfg.Source(), &store, metrics, log)
	replica.Store(rep)
	reports := make(chan *cache.Snapshot, 1)
	rep.OnUpdate = func(s *cache.Snapshot) { latest(reports, s) }

	// ctx ends every part of the worker, whatever the reason it stops
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runner := schedule.NewRunner(log)
	defer runner.Wait() // after cancel (deferred later, so run earlier)
	defer cancel()
	if err := handleSchedules(ctx, conn, runner, rep, cfg.Refresh, log); err != nil {
		return err
	}

	// In external mode nothing exits because the master is gone: the worker
	// keeps serving and waits for it (Lifeline is nil without a pipe).
	var lifeline <-chan struct{}
	if !cfg.External() {
		lifeline = supervisor.Lifeline(environ)
	}
	g, gctx := errgroup.WithContext(ctx)
	warm := make(chan struct{})
	g.Go(func() error { return rep.Run(gctx, func() { close(warm) }) })
	g.Go(func() error { reportState(gctx, conn, reports, log); return nil })
	var notWarm error
	select {
	case <-warm:
	case <-gctx.Done(): // a stop request, or the replica failed (its error is below)
	case <-lifeline:
		notWarm = errors.New("the master is gone; exiting")
	case <-conn.Done():
		notWarm = errors.New("bus connection closed")
	}
	if notWarm != nil || gctx.Err() != nil {
		cancel()
		if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
			return errors.Join(notWarm, err)
		}
		return notWarm
	}
	isWarm.Store(true)

	// Listen and serve only with a warm cache: the socket is shared (by the master,
	// or with SO_REUSEPORT), so a worker that accepted before it had data would
	// answer 503 or hold connections during a start or a reload.
	ln, err := listen(cfg, log)
	if err != nil {
		cancel()
		g.Wait()
		return err
	}
	defer ln.Close()
	srv := newServer(&store, cfg.ID, metrics, log)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	if cfg.External() {
		// Tell the master now and after every reconnect, until it hears (it may be
		// restarting), then send it our cache state again.
		g.Go(func() error {
			send := func(ctx context.Context) error { return conn.SendToMaster(ctx, "ready", nil) }
			cli.Announce(gctx, send, reconnected, cfg.ReadyTimeout, log, func() {
				if reported.CompareAndSwap(false, true) {
					srv.setReady()
					log.Info("worker ready", "addr", ln.Addr().String(), "version", store.Load().Version)
				}
				if s := store.Load(); s != nil {
					latest(reports, s)
				}
			})
			return nil
		})
	} else {
		rctx, rcancel := context.WithTimeout(ctx, cfg.ReadyTimeout)
		err = conn.SendToMaster(rctx, "ready", nil)
		rcancel()
		if err != nil {
			ln.Close()
			<-served
			cancel()
			g.Wait()
			return fmt.Errorf("report ready: %w", err)
		}
		reported.Store(true)
		srv.setReady()
		log.Info("worker ready", "addr", ln.Addr().String(), "version", store.Load().Version)
	}

	var reason error
	select {
	case <-ctx.Done():
		log.Info("stopping")
	case <-lifeline:
		reason = errors.New("the master is gone; exiting")
	case <-conn.Done():
		reason = errors.New("bus connection closed")
	case err := <-served:
		served <- err // keep it for the wait below
		reason = fmt.Errorf("serve: %w", err)
	}
	stopping.Store(true)
	// Close the listener first and let Serve return: connections still queued on the
	// shared socket go to the other workers. Then finish what was accepted.
	ln.Close()
	<-served
	sctx, scancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer scancel()
	if err := srv.drain(sctx); err != nil {
		reason = errors.Join(reason, fmt.Errorf("shutdown: %w", err))
	}
	cancel()
	return errors.Join(reason, g.Wait())
}

// handleSchedules registers the refresh tasks and runs each schedule run the agent
// sends in its own goroutine, bounded by ctx.
func handleSchedules(ctx context.Context, conn *bus.Conn, runner *schedule.Runner, rep *cache.Replica, cfg cli.Refresh, log *slog.Logger) error {
	for _, spec := range cache.Schedules(cfg.ForceInterval, cfg.PullInterval) {
		task := func(ctx context.Context, r schedule.Run) error { return rep.Pull(ctx) }
		if spec.Name == cache.ForceRefresh {
			task = func(ctx context.Context, r schedule.Run) error { return rep.Force(ctx, r.Seq) }
		}
		if err := runner.Handle(spec, task); err != nil {
			return err
		}
	}
	return conn.On("schedule", func(_ context.Context, m bus.Message) (any, error) {
		var r schedule.Run
		if err := m.Decode(&r); err != nil {
			return nil, fmt.Errorf("bad schedule run from %s: %w", m.From, err)
		}
		if err := runner.Dispatch(ctx, r); err != nil {
			log.Warn("schedule run not started", "schedule", r.Name, "seq", r.Seq, "err", err)
		}
		return nil, nil
	})
}

// stateReport tells the master which version this worker serves, for `master status`.
type stateReport struct {
	Version   string    `json:"version"`
	By        string    `json:"by"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// latest puts s in ch, replacing a report not yet sent.
func latest(ch chan *cache.Snapshot, s *cache.Snapshot) {
	for {
		select {
		case ch <- s:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

// reportState sends each new snapshot's state to the master, the newest first,
// retrying until it is delivered or a newer one replaces it.
func reportState(ctx context.Context, conn *bus.Conn, reports <-chan *cache.Snapshot, log *slog.Logger) {
	var pending *cache.Snapshot
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case pending = <-reports:
		case <-retry:
		}
		retry = nil
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := conn.SendToMaster(sctx, "state", stateReport{Version: pending.Version, By: pending.By, UpdatedAt: pending.UpdatedAt})
		cancel()
		if err != nil && ctx.Err() == nil {
			log.Debug("report state to the master; retrying", "err", err)
			retry = time.After(time.Second)
		}
	}
}

// listen returns the socket inherited from the master (accepted from in turn with
// the other workers: see fifoListener), or in external mode its own listener on the
// shared address, bound with SO_REUSEPORT so every worker of the pod can bind it
// (the kernel spreads the connections over the workers' sockets).
func listen(cfg config, log *slog.Logger) (net.Listener, error) {
	if cfg.ListenFD > 0 {
		fifo, err := newFIFOListener(cfg.ListenFD)
		if err == nil {
			return fifo, nil
		}
		if !errors.Is(err, errNotTCP) {
			return nil, err
		}
		log.Info("the inherited listener is not plain TCP: accepting through the netpoller, connections not dealt in turn")
		f := os.NewFile(uintptr(cfg.ListenFD), "listener")
		defer f.Close()
		ln, err := net.FileListener(f)
		if err != nil {
			return nil, fmt.Errorf("inherited listener: %w", err)
		}
		return ln, nil
	}
	lc := net.ListenConfig{Control: reusePort}
	ln, err := lc.Listen(context.Background(), "tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}

func reusePort(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// server is the worker's HTTP API.
type server struct {
	http.Server
	ready chan struct{}

	mu      sync.Mutex
	conns   map[net.Conn]connState
	changed chan struct{} // closed and replaced at every connection state change
}

type connState struct {
	state http.ConnState
	since time.Time
}

// newConnGrace is how long drain waits for a connection that was accepted but
// has not sent a request yet (a client that connects ahead of time may never).
const newConnGrace = 2 * time.Second

func newServer(store *cache.Store, id string, metrics *cache.Metrics, log *slog.Logger) *server {
	s := &server{ready: make(chan struct{}), conns: make(map[net.Conn]connState), changed: make(chan struct{})}
	s.ConnState = s.track
	mux := http.NewServeMux()
	data := cache.NewHandler(store, id, metrics)
	mux.Handle("/data", data)
	mux.Handle("/data/", data)
	mux.Handle("GET /metrics", cache.WithHeaders(store, id, metrics.Handler()))
	mux.Handle("GET /healthz", cache.WithHeaders(store, id, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})))
	mux.Handle("GET /readyz", cache.WithHeaders(store, id, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-s.ready:
			io.WriteString(w, "ready\n")
		default:
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}
	})))
	mux.Handle("GET /{$}", cache.WithHeaders(store, id, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "yolk worker %s\n", id)
	})))
	s.Handler = mux
	s.ReadHeaderTimeout = 10 * time.Second
	s.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	return s
}

func (s *server) setReady() { close(s.ready) }

func (s *server) track(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st {
	case http.StateClosed, http.StateHijacked:
		delete(s.conns, c)
	default:
		s.conns[c] = connState{state: st, since: time.Now()}
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// busy reports whether a connection has a request under way or may still send
// its first one, and returns a channel closed at the next state change.
func (s *server) busy() (bool, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		if c.state == http.StateActive || (c.state == http.StateNew && time.Since(c.since) < newConnGrace) {
			return true, s.changed
		}
	}
	return false, s.changed
}

// drain stops the server without dropping a request, once Serve has returned.
// http.Server.Shutdown alone closes, without a reply, a connection whose first
// request it reads after shutdown began; so first turn keep-alives off (idle
// connections close, and each busy one closes after its response), wait until no
// connection is busy, and only then Shutdown. ctx bounds the whole wait.
func (s *server) drain(ctx context.Context) error {
	s.SetKeepAlivesEnabled(false)
	for {
		busy, changed := s.busy()
		if !busy {
			break
		}
		select {
		case <-changed:
		case <-time.After(50 * time.Millisecond): // a new connection's grace may run out
		case <-ctx.Done():
			return s.Shutdown(ctx)
		}
	}
	return s.Shutdown(ctx)
}
