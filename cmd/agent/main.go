// Command agent is yolk's one process for background duties. It connects to the bus
// with the credential its master gave it, reports ready, and answers ping.
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
	"syscall"
	"time"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/internal/cli"
	"github.com/yolkgo/yolk/supervisor"
)

const synopsis = `
agent: yolk's background process: owns the schedules and the push refresh.

Usage:
  agent          connect to the bus and run (normally started by the master)
  agent --help   this text`

type config struct {
	cli.Bus
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
	rctx, cancel := context.WithTimeout(ctx, cfg.ReadyTimeout)
	err = conn.SendToMaster(rctx, "ready", nil)
	cancel()
	if err != nil {
		return fmt.Errorf("report ready: %w", err)
	}
	log.Info("agent ready")

	select {
	case <-ctx.Done():
		log.Info("stopping")
		return nil
	case <-supervisor.Lifeline(environ):
		return errors.New("the master is gone; exiting")
	case <-conn.Done():
		return errors.New("bus connection closed")
	}
}
