// Package agent is the agent command, yolk's one process for background duties. It owns the schedule
// timers and dispatches each run over the bus, reads the remote source for the
// whole service, follows the source's change feed and pushes refreshes to every
// worker. The master starts it in fork mode; the platform does in external mode.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/cache"
	"github.com/yolkgo/yolk/internal/cli"
	"github.com/yolkgo/yolk/schedule"
	"github.com/yolkgo/yolk/supervisor"
)

const synopsis = `
agent: yolk's background process: owns the schedules, reads the remote source
for the whole service and pushes refreshes to every worker.

Usage:
  agent          connect to the bus and run (started by the master in fork mode; in
                 external mode by the platform: it logs in as user agent with
                 YOLK_AGENT_SECRET, and waits for the master)
  agent healthcheck [--ready]
                 ask the running agent over YOLK_HEALTH_SOCKET: GET /healthz (alive), or
                 /readyz (reported ready); exit 0 on 200, else 1
  agent --help   this text`

type config struct {
	cli.Deploy
	cli.Bus
	AgentSecret string `env:"YOLK_AGENT_SECRET" help:"external mode: the agent's bus secret; the bus user is agent (required; never printed)"`
	cli.Refresh
	ReadyTimeout time.Duration `env:"YOLK_READY_TIMEOUT" envDefault:"30s" help:"how long to try to report ready (external mode: each try; it tries until it succeeds)"`
	cli.Logging
}

// Main runs the command with the process's arguments, environment and stdio, and
// exits: 0 after a clean stop, 2 for a usage error, 1 otherwise.
func Main() { cli.Main("agent", run) }

// parseConfig reads and checks the config, and fills the bus login: the one the
// master set (fork mode), or user agent with the role secret (external mode).
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
	return cfg, cfg.Join(&cfg.Bus, bus.RoleAgent, "YOLK_AGENT_SECRET", cfg.AgentSecret, cfg.ReadyTimeout)
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
	log, err := cfg.NewLogger(stderr, slog.String("proc", "agent"), slog.String("id", cfg.ID))
	if err != nil {
		return err
	}
	var reported, stopping atomic.Bool
	stopHealth, err := cfg.StartHealth(func() error {
		switch {
		case stopping.Load():
			return errors.New("stopping")
		case !reported.Load():
			return errors.New("not reported ready to the master yet")
		}
		return nil
	}, log)
	if err != nil {
		return err
	}
	defer stopHealth()
	defer stopping.Store(true)

	reconnected := make(chan struct{}, 1)
	conn, err := bus.Dial(ctx, bus.Options{
		URL: cfg.URL, User: cfg.User, Password: cfg.Secret,
		ID: cfg.ID, Role: bus.RoleAgent, Logger: log,
		OnReconnect: func() {
			select { // a restarted master knows nobody: tell it again (external mode)
			case reconnected <- struct{}{}:
			default:
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
	if err := conn.On("ping", func(context.Context, bus.Message) (any, error) {
		return "pong", nil
	}); err != nil {
		return err
	}
	if err := conn.On("yolk-ready", func(context.Context, bus.Message) (any, error) {
		log.Info("every process is ready")
		return nil, nil
	}); err != nil {
		return err
	}

	sched, err := schedule.NewScheduler(cache.Schedules(cfg.ForceInterval, cfg.PullInterval), dispatcher(conn, log), log)
	if err != nil {
		return err
	}
	hub := cache.NewHub(conn, cfg.Source(), log)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	warm := make(chan struct{})
	g.Go(func() error { return hub.Run(gctx, func() { close(warm) }) })
	select {
	case <-warm:
	case <-gctx.Done():
		cancel()
		return g.Wait()
	}
	logReady := func() {
		if s := hub.Load(); s != nil {
			log.Info("agent ready", "version", s.Version)
		} else {
			log.Warn("agent ready without data: the remote source has not answered yet")
		}
	}
	if cfg.External() {
		// Tell the master now and after every reconnect, until it hears: it may be
		// restarting, and nothing here exits because it is gone.
		g.Go(func() error {
			send := func(ctx context.Context) error { return conn.SendToMaster(ctx, "ready", nil) }
			cli.Announce(gctx, send, reconnected, cfg.ReadyTimeout, log, func() {
				if reported.CompareAndSwap(false, true) {
					logReady()
				}
			})
			return nil
		})
	} else {
		rctx, rcancel := context.WithTimeout(ctx, cfg.ReadyTimeout)
		err = conn.SendToMaster(rctx, "ready", nil)
		rcancel()
		if err != nil {
			cancel()
			g.Wait()
			return fmt.Errorf("report ready: %w", err)
		}
		reported.Store(true)
		logReady()
	}

	g.Go(func() error { return sched.Run(gctx) })
	if !strings.EqualFold(cfg.PushURL, "off") {
		g.Go(func() error { return cache.WatchFeed(gctx, cfg.PushURL, cfg.PushSubject, log, hub.Changed, hub.Resync) })
	} else {
		log.Info("push refresh is off")
	}

	var lifeline <-chan struct{} // none in external mode: the agent waits for a restarted master
	if !cfg.External() {
		lifeline = supervisor.Lifeline(environ)
	}
	var reason error
	select {
	case <-ctx.Done():
		log.Info("stopping")
	case <-gctx.Done():
		reason = errors.New("a part of the agent stopped")
	case <-lifeline:
		reason = errors.New("the master is gone; exiting")
	case <-conn.Done():
		reason = errors.New("bus connection closed")
	}
	stopping.Store(true)
	cancel()
	if err := g.Wait(); err != nil {
		return err
	}
	return reason
}

// dispatcher sends each schedule run over the bus: a Worker run to one worker
// chosen by the bus, an All run to every worker.
func dispatcher(conn *bus.Conn, log *slog.Logger) func(context.Context, schedule.Run) {
	return func(ctx context.Context, r schedule.Run) {
		var err error
		switch r.Type {
		case schedule.All:
			err = conn.SendToApp("schedule", r)
		default:
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = conn.SendRandom(sctx, "schedule", r)
			cancel()
		}
		if err != nil {
			log.Error("dispatch schedule run", "schedule", r.Name, "seq", r.Seq, "err", err)
			return
		}
		log.Debug("schedule run dispatched", "schedule", r.Name, "seq", r.Seq, "type", r.Type.String())
	}
}
