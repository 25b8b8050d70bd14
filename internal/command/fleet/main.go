// Package fleet is the fleet command (cmd/fleet): yolk's fleet on one machine in the foreground, for make fleet:
// a 3-node NATS cluster with JetStream (domain fleet), the example source, and 3
// yolk hosts that join the cluster as leaf nodes, each with its own HTTP port and
// run directory. Ctrl-C stops the hosts, then the source, then the cluster.
//
// It is a developer's launcher built on internal/fleetrig, not an application of
// package yolk (so it lives beside the source's command, not in examples/): the
// hosts are the cache application's bin/master.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/yolkgo/yolk/internal/cli"
)

// Main runs the command with args and exits: 0 after a clean stop, 2 for a
// usage error, 1 otherwise.
func Main(args []string) {
	// The first signal stops the fleet in order; a second one kills what is left.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	ctx, stop := context.WithCancel(context.Background())
	hard, kill := context.WithCancel(context.Background())
	go func() {
		<-sigs
		stop()
		<-sigs
		kill()
	}()

	restore := takeTerminal()
	environ := os.Environ()
	if cli.Getenv(environ, "YOLK_LOG_FORMAT") == "" && isTerminal(os.Stdout) {
		// The hosts write to a pipe (prefixed here), so they would pick json.
		environ = append(environ, "YOLK_LOG_FORMAT=text")
	}
	err := run(ctx, hard, args, environ, os.Stdout, os.Stderr)
	restore()
	if err != nil {
		fmt.Fprintf(os.Stderr, "fleet: %v\n", err)
		var uerr *cli.UsageError
		if errors.As(err, &uerr) {
			os.Exit(cli.ExitUsage)
		}
		os.Exit(1)
	}
}
