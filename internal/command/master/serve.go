package master

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/broker"
	"github.com/yolkgo/yolk/internal/cli"
	"github.com/yolkgo/yolk/internal/masterapi"
	"github.com/yolkgo/yolk/supervisor"
)

// serve runs the master in the foreground until ctx is cancelled, then stops the
// workers, the agent and the bus in that order.
func serve(ctx context.Context, cfg config, environ []string, stderr io.Writer, sig signals) error {
	begin := time.Now()
	id := strconv.Itoa(os.Getpid())
	if err := cfg.checkBins(); err != nil {
		return err
	}
	log, err := cfg.NewLogger(stderr, slog.String("proc", "master"))
	if err != nil {
		return err
	}
	state, err := claimRunDir(cfg.RunDir)
	if err != nil {
		return err
	}
	defer state.remove()

	b, conn, err := startBus(ctx, cfg, id, log, broker.Config{Stores: cfg.stores})
	if err != nil {
		return err
	}
	defer b.Shutdown()
	defer conn.Close()

	// Plain TCP, not Go's default MPTCP: the workers take turns in blocking
	// accept(2) calls bounded by SO_RCVTIMEO, which an MPTCP listener ignores.
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(ctx, "tcp", cfg.HTTPAddr)
	if err != nil {
		return cli.BadValue("YOLK_HTTP_ADDR", cfg.HTTPAddr, "listen: %v", err)
	}
	defer ln.Close()
	lnFile, err := ln.(*net.TCPListener).File()
	if err != nil {
		return fmt.Errorf("share listener: %w", err)
	}
	defer lnFile.Close()

	childEnv := childEnviron(environ, "YOLK_BUS_URL="+b.ClientURL())
	if cfg.Fleet.On() {
		childEnv = append(childEnv, "YOLK_HOST="+cfg.Host) // as the master named it
	}
	workerEnv := append(slices.Clone(childEnv), "YOLK_LISTEN_FD=4")
	if limit := workerMemLimit(environ, cfg.Workers, containerMemory); limit > 0 {
		workerEnv = append(workerEnv, "GOMEMLIMIT="+strconv.FormatUint(limit, 10))
		log.Info("each worker's GOMEMLIMIT is its share of the container's memory limit", "gomemlimit", mebibytes(limit))
	}
	sockets := newHealthSockets(cfg.RunDir, log)
	var sup *supervisor.Supervisor
	var serviceReady atomic.Bool
	sup = supervisor.New(supervisor.Config{
		Agent: supervisor.Spec{Role: "agent", Path: cfg.AgentBin, Env: childEnv},
		Worker: supervisor.Spec{
			Role: "worker", Path: cfg.WorkerBin,
			Env:        workerEnv,
			ExtraFiles: []*os.File{lnFile},
		},
		Workers:         cfg.Workers,
		ReadyTimeout:    cfg.ReadyTimeout,
		ShutdownTimeout: cfg.ShutdownTimeout + childStopGrace,
		Prepare:         sockets.prepare(credentials(b, log)),
		OnAllReady: func() {
			log.Info("yolk ready", "workers", cfg.Workers, "addr", ln.Addr().String(),
				"startup", time.Since(begin).Round(time.Millisecond).String())
			serviceReady.Store(true)
			if err := conn.Broadcast(masterapi.EventServiceReady, nil); err != nil {
				log.Error("broadcast yolk-ready", "err", err)
			}
		},
		Output: forwarder(log),
		Logger: log,
	})

	stopHealth, err := cfg.StartHealth(func() error { return readiness(childStatuses(sup.Status())) }, log)
	if err != nil {
		return err
	}
	defer stopHealth()

	live := func() []processStatus { return childStatuses(sup.Status()) }
	mdl := newModel(live)
	sm := newServiceMetrics(conn, live, true, log)
	mdl.onComplete, mdl.onFetches = sm.changeComplete, sm.changeCounted
	mdl.onRound = func(live []processStatus) { sm.observeRestarts(live) }
	var reloading atomic.Bool
	doReload := func() {
		if !reloading.CompareAndSwap(false, true) {
			log.Warn("reload already under way")
			return
		}
		log.Info("rolling reload of the workers")
		t := time.Now()
		sm.observeRestarts(live()) // the old slots' restarts, before they go
		err := func() error {
			// Done before "reload done" is logged: a reload asked for on
			// reading it is not refused as under way.
			defer reloading.Store(false)
			return sup.Reload(ctx)
		}()
		sm.reloaded(err)
		if err != nil {
			log.Error("reload", "err", err)
			return
		}
		log.Info("reload done", "workers", cfg.Workers, "took", time.Since(t).Round(time.Millisecond).String())
	}
	view := func() statusReply {
		return mdl.view(selfStatus(id, begin, supervisor.StateReady), statusReply{
			Mode:      cli.ModeFork,
			Bus:       b.ClientURL(),
			Reloading: reloading.Load(),
			Fleet:     fleetState(ctx, cfg, b, conn),
		})
	}
	adm, err := newAdmin(ctx, cfg, view, mdl.subscribe, log)
	if err != nil {
		return err
	}
	defer adm.Close()
	adm.Handle("GET /metrics", sm)
	wire := newWireGate(conn)
	handlers := map[string]bus.Handler{
		masterapi.EventReady: func(_ context.Context, m bus.Message) (any, error) {
			pid, err := strconv.Atoi(m.From)
			if err != nil {
				return nil, fmt.Errorf("ready from %q: not a child of this master", m.From)
			}
			w, err := wire.admit(m)
			if err != nil {
				log.Error("refused a child's ready report", "pid", pid, "err", err)
				return nil, err
			}
			sup.Ready(pid)
			return masterapi.ReadyReply{ServiceReady: serviceReady.Load(), Wire: w}, nil
		},
		masterapi.EventState: mdl.handleState,
		"status":             func(context.Context, bus.Message) (any, error) { return view(), nil },
		"reload": func(context.Context, bus.Message) (any, error) {
			if reloading.Load() {
				return nil, errors.New("a reload is already under way")
			}
			go doReload() // the new workers' ready events arrive on this same route
			return "reload started", nil
		},
	}
	for event, h := range handlers { // what the children and the control command send the master
		if err := conn.OnMaster(event, h); err != nil {
			return err
		}
	}
	ctl := b.Mint(bus.RoleControl, "ctl")
	if err := state.write(stateFile{
		PID: os.Getpid(), Bus: b.ClientURL(), User: ctl.User, Secret: ctl.Password,
		HTTP: ln.Addr().String(), Admin: adm.Addr(), Started: begin,
	}); err != nil {
		return err
	}
	log.Info("master started", "version", version, "bus", b.ClientURL(), "http", ln.Addr().String(),
		"admin", adm.Addr(), "workers", cfg.Workers, "runDir", cfg.RunDir)
	// the heartbeats end before the bus connection closes (defers run last first)
	var beats sync.WaitGroup
	defer beats.Wait()
	bctx, stopBeats := context.WithCancel(ctx)
	defer stopBeats()
	beats.Go(func() { mdl.heartbeats(bctx, pingOver(conn), heartbeatInterval(cfg.HangTimeout), log) })
	if wd := newWatchdog(cfg, sup, mdl, sockets, log); wd.on() {
		var wg sync.WaitGroup
		defer wg.Wait()
		wctx, cancel := context.WithCancel(ctx)
		defer cancel() // before the wait: Run may return while ctx lives on
		wg.Go(func() { wd.run(wctx) })
	}

	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	for {
		select {
		case err := <-done:
			if err != nil {
				return err
			}
			log.Info("stopped cleanly")
			return nil
		case <-sig.reload:
			go doReload()
		case <-sig.kill:
			log.Warn("second signal: killing every child now")
			sup.Kill()
			sig.kill = nil
		}
	}
}

// childStopGrace is how long the master waits, beyond YOLK_SHUTDOWN_TIMEOUT,
// for a child to exit after SIGTERM before it kills it: the child bounds its own
// drain and BeforeClose hooks by YOLK_SHUTDOWN_TIMEOUT, and then still has to
// stop its background work and close its bus connection.
const childStopGrace = time.Second

// startBus starts the broker at the configured loopback address, with bc's other
// settings, and connects the master to it in-process. The caller closes the
// connection, then shuts the broker down.
func startBus(ctx context.Context, cfg config, id string, log *slog.Logger, bc broker.Config) (*broker.Broker, *bus.Conn, error) {
	bc.Host, bc.Port, _ = cfg.busAddr()
	bc.Logger = log
	fleet, err := cfg.fleet()
	if err != nil {
		return nil, nil, err
	}
	bc.Fleet = fleet
	b, err := broker.Start(bc)
	if err != nil {
		return nil, nil, fmt.Errorf("start bus: %w", err)
	}
	o := bus.Options{InProcess: b.InProcess(), ID: id, Role: bus.RoleMaster, Logger: log}
	if fleet != nil {
		o.Host, o.Domain = fleet.Host, fleet.Domain
		log.Info("joining the fleet", "host", fleet.Host, "cluster", cfg.Fleet.ClusterURL, "domain", fleet.Domain)
		go watchLink(ctx, b, log)
	}
	mc := b.Mint(bus.RoleMaster, id)
	o.User, o.Password = mc.User, mc.Password
	conn, err := bus.Dial(ctx, o)
	if err != nil {
		b.Shutdown()
		return nil, nil, fmt.Errorf("connect to bus: %w", err)
	}
	return b, conn, nil
}

// credentials mints a bus credential for each child before it starts, binds it to
// the child's pid (its id) once known, and revokes it when the child has exited.
func credentials(b *broker.Broker, log *slog.Logger) func(role string) ([]string, func(int), func(), error) {
	return func(role string) ([]string, func(int), func(), error) {
		r := bus.Role(role)
		if r != bus.RoleAgent && r != bus.RoleWorker {
			return nil, nil, nil, fmt.Errorf("no bus role %q", role)
		}
		cred := b.Mint(r, "")
		env := []string{"YOLK_BUS_USER=" + cred.User, "YOLK_BUS_SECRET=" + cred.Password}
		started := func(pid int) {
			if err := b.Bind(cred.User, strconv.Itoa(pid)); err != nil {
				log.Error("bind credential", "role", role, "pid", pid, "err", err)
			}
		}
		exited := func() { b.Revoke(cred.User) }
		return env, started, exited, nil
	}
}

// childEnviron is the master's environment for a child, without the variables the
// master sets per child, plus extra.
func childEnviron(environ []string, extra ...string) []string {
	// the health socket is the master's (children serving on one path would fight
	// over it), and the role secrets are external mode's: never handed down
	own := []string{"YOLK_ID", "YOLK_BUS_URL", "YOLK_BUS_USER", "YOLK_BUS_SECRET", "YOLK_LISTEN_FD", "YOLK_LOG_FORMAT",
		"YOLK_MODE", "YOLK_HEALTH_SOCKET", "YOLK_AGENT_SECRET", "YOLK_WORKER_SECRET"}
	var env []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(own, k) {
			env = append(env, kv)
		}
	}
	// children log JSON so the master can forward their records intact
	return append(append(env, "YOLK_LOG_FORMAT=json", "YOLK_MODE=fork"), extra...)
}
