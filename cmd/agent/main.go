// Command agent is yolk's one process for background duties. It owns the schedule
// timers and dispatches each run over the bus, reads the remote source for the
// whole service, follows the source's change feed and pushes refreshes to every
// worker. It is normally started by the master.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
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
  agent          connect to the bus and run (normally started by the master)
  agent --help   this text`

type config struct {
	cli.Bus
	cli.Refresh
	ReadyTimeout time.Duration `env:"YOLK_READY_TIMEOUT" envDefault:"30s" help:"how long to try to report ready"`
	cli.Logging
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop) // first signal: graceful stop; a second one kills
	if err := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "agent: %v\n", err)
		var uerr *cli.UsageError
		if errors.As(err, &uerr) {
			os.Exit(cli.ExitUsage)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	if cli.WantsHelp(args) {
		cli.Usage(stdout, synopsis, config{})
		return nil
	}
	if len(args) > 0 {
		return cli.Usagef("unknown command %q (try --help)", args[0])
	}
	cfg, err := cli.Parse[config](environ)
	if err != nil {
		return err
	}
	if err := cfg.Refresh.Validate(); err != nil {
		return err
	}
	if cfg.ID == "" {
		cfg.ID = strconv.Itoa(os.Getpid())
	}
	log, err := cfg.NewLogger(stderr, slog.String("proc", "agent"), slog.String("id", cfg.ID))
	if err != nil {
		return err
	}
	conn, err := bus.Dial(ctx, bus.Options{
		URL: cfg.URL, User: cfg.User, Password: cfg.Secret,
		ID: cfg.ID, Role: bus.RoleAgent, Logger: log,
	})
	if err != nil {
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
	rctx, rcancel := context.WithTimeout(ctx, cfg.ReadyTimeout)
	err = conn.SendToMaster(rctx, "ready", nil)
	rcancel()
	if err != nil {
		cancel()
		g.Wait()
		return fmt.Errorf("report ready: %w", err)
	}
	if s := hub.Load(); s != nil {
		log.Info("agent ready", "version", s.Version)
	} else {
		log.Warn("agent ready without data: the remote source has not answered yet")
	}

	g.Go(func() error { return sched.Run(gctx) })
	if !strings.EqualFold(cfg.PushURL, "off") {
		g.Go(func() error { return cache.WatchFeed(gctx, cfg.PushURL, cfg.PushSubject, log, hub.Changed, hub.Resync) })
	} else {
		log.Info("push refresh is off")
	}

	var reason error
	select {
	case <-ctx.Done():
		log.Info("stopping")
	case <-gctx.Done():
		reason = errors.New("a part of the agent stopped")
	case <-supervisor.Lifeline(environ):
		reason = errors.New("the master is gone; exiting")
	case <-conn.Done():
		reason = errors.New("bus connection closed")
	}
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
