// Package master is the master command, yolk's supervisor: it serves the bus, starts the agent and the
// workers, restarts what crashes, reloads workers without downtime and stops them all
// in order. In external mode (YOLK_MODE=external) it starts nothing: it serves the bus
// to the agent and workers the platform starts, and tracks who is ready.
// `master status` and `master reload` talk to a running master.
package master

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/yolkgo/yolk/bus/broker"
	"github.com/yolkgo/yolk/internal/cli"
)

const synopsis = `
%[1]s: yolk's master. Serves the bus, starts the agent, then the workers,
restarts what crashes, and stops everything in order. In external mode
(YOLK_MODE=external: compose, Kubernetes) it starts nothing and opens no HTTP
port: it serves the bus on loopback to the agent and workers the platform starts,
admits each role by its secret, and tracks who is ready.

Usage:
  %[1]s
      run in the foreground (SIGTERM/SIGINT: graceful stop, a second one kills;
      SIGHUP: rolling reload of the workers, fork mode)
  %[1]s status [--json]
      every process of the running master: role, id, state, uptime, restarts
  %[1]s reload
      replace the workers one at a time, each new one ready before an old one stops
  %[1]s pause
      do nothing until SIGTERM: holds a network namespace in compose.yaml
  %[1]s healthcheck [--ready]
      ask the running master over YOLK_HEALTH_SOCKET: GET /healthz (alive), or
      /readyz (the agent and at least one worker ready); exit 0 on 200, else 1
  %[1]s --help
      this text`

// selfSynopsis is the part of --help of a program that is every role.
const selfSynopsis = `
This one program is also the agent and the workers: the master starts itself
again with YOLK_ROLE=agent or worker. In external mode run one role per
container: %[1]s master, %[1]s agent, %[1]s worker (or YOLK_ROLE); each
role has its own --help and healthcheck.`

// App is what the master knows of the application it runs.
type App struct {
	Name  string // the program's name in --help
	About string // the application's paragraph of --help
	// Config is the application's config struct (a pointer, or nil), listed in --help.
	Config any
	// Check parses and checks the application's config in environ: in fork
	// mode a bad value stops the master before anything starts, with a
	// *cli.UsageError.
	Check func(environ []string) error
	// Self: the children are this executable, told their role by YOLK_ROLE
	// (one binary); else YOLK_AGENT_BIN and YOLK_WORKER_BIN, by default agent
	// and worker beside the master.
	Self bool
	// Stores are the key-value buckets and object stores the bus keeps for
	// the agent and workers.
	Stores []broker.Store
	// Fleet are the stores on the cluster, in a fleet (YOLK_CLUSTER_URL).
	Fleet []broker.Store
}

// version is stamped by make build.
var version = "dev"

// Version is the version stamped into the build (make build), "dev" without.
func Version() string { return version }

// signals are what main turns OS signals into after the first stop request.
type signals struct {
	reload <-chan struct{} // SIGHUP
	kill   <-chan struct{} // a second SIGTERM or SIGINT
}

// Main runs the master of app with args, the process's environment and stdio.
// After an error it exits, 2 for a usage error and 1 otherwise; after a clean
// stop it returns.
func Main(app App, args []string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reload := make(chan struct{}, 1)
	kill := make(chan struct{})
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		stopping := false
		for s := range sigs {
			switch {
			case s == syscall.SIGHUP:
				select {
				case reload <- struct{}{}:
				default: // one is already pending
				}
			case !stopping:
				stopping = true
				cancel()
			default:
				close(kill)
				signal.Stop(sigs)
				return
			}
		}
	}()
	err := run(ctx, app, args, os.Environ(), os.Stdout, os.Stderr, signals{reload: reload, kill: kill})
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", app.Name, err)
		var uerr *cli.UsageError
		if errors.As(err, &uerr) {
			os.Exit(cli.ExitUsage)
		}
		os.Exit(1)
	}
}

// Run is Main without the process's globals: no SIGHUP, no second signal; it
// returns the error Main would print.
func Run(ctx context.Context, app App, args, environ []string, stdout, stderr io.Writer) error {
	return run(ctx, app, args, environ, stdout, stderr, signals{})
}

func run(ctx context.Context, app App, args, environ []string, stdout, stderr io.Writer, sig signals) error {
	if cli.WantsHelp(args) {
		cli.Usage(stdout, fmt.Sprintf(synopsis, app.Name), config{})
		if app.Self {
			fmt.Fprintln(stdout)
			fmt.Fprintln(stdout, strings.TrimSpace(fmt.Sprintf(selfSynopsis, app.Name)))
		}
		cli.AppUsage(stdout, app.About, app.Config)
		return nil
	}
	cmd := ""
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "healthcheck": // needs no secret, only the socket
		return cli.HealthcheckCommand(ctx, args, environ, stdout)
	case "pause":
		// Hold a network namespace for others to join, as a Kubernetes pod's
		// pause container does (compose.yaml): do nothing until stopped.
		<-ctx.Done()
		return nil
	}
	cfg, err := cli.Parse[config](environ)
	if err != nil {
		return err
	}
	if err := cfg.validate(app.Self); err != nil {
		return err
	}
	cfg.stores, cfg.fleetStores = app.Stores, app.Fleet
	cfg.adminSet = slices.ContainsFunc(environ, func(kv string) bool { return strings.HasPrefix(kv, "YOLK_ADMIN_ADDR=") && kv != "YOLK_ADMIN_ADDR=" })
	switch cmd {
	case "":
		if len(args) > 0 {
			return cli.Usagef("unexpected argument %q (try --help)", args[0])
		}
		if cfg.External() {
			return serveExternal(ctx, cfg, stderr, sig)
		}
		// The children get the master's environment: a bad value stops the start
		// here, not in a crash loop. (In external mode each container has its own.)
		if app.Check != nil {
			if err := app.Check(environ); err != nil {
				return err
			}
		}
		return serve(ctx, cfg, environ, stderr, sig)
	case "status":
		return status(ctx, cfg, args, stdout)
	case "reload":
		return reloadCmd(ctx, cfg, args, stdout)
	default:
		return cli.Usagef("unknown command %q (try --help)", cmd)
	}
}
