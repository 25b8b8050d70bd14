// Package source is the source command, the remote data source of the yolk example, standing for a
// third party's service: an HTTP API over a small JSON data set with ETags and
// writes, an optional timer that changes a key now and then, and change events on
// its own embedded NATS broker. It can misbehave on request, for tests of the
// consumers. It is not part of the yolk runtime: workers only read from it.
package source

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/yolkgo/yolk/internal/cli"
)

const synopsis = `
source: the example's remote data source: an HTTP API over a JSON data set with
ETags, and a change feed on its own NATS broker.

Usage:
  source               serve until SIGTERM or SIGINT (a second one kills)
  source healthcheck   GET /healthz on SOURCE_ADDR: exit 0 if it answers 200, else 1
  source --help        this text

HTTP:
  GET    /data         the data set as a JSON object of key to value, with ETag "<version>";
                       If-None-Match with the current ETag gets 304
  PUT    /data/{key}   set a key; body: any JSON value up to 1 MiB;
                       key: 1 to 256 of A-Z a-z 0-9 _ . -
  DELETE /data/{key}   remove a key (404 if absent)
  GET    /stats        {"fetches":N,"checks":N,"version":"..."}: full answers and 304s to GET /data
  GET    /healthz      200 ok
Versions are decimal ("1", "2", ...) and start at 1. Each change answers
{"version":"<v>"}, then publishes the same on SOURCE_SUBJECT at the broker.

Fault injection, for tests of the consumers:
  POST /faults {"mode":"<mode>"}   how GET /data answers from now on (GET /faults: the mode)
    none        normally
    error500    500 with a JSON error
    hang        not at all, until the client goes away
    badjson     200 with the body {not json
    truncated   200 with half the body and a larger Content-Length, then the connection closes
    huge        200 with a valid-looking JSON object of more than 64 MiB, streamed
    wrongetag   200 with the current body and the ETag of the next version
  While a fault is set, no answer is a 304; each one but hang counts as a fetch.`

type config struct {
	Addr        string        `env:"SOURCE_ADDR" envDefault:"127.0.0.1:7002" help:"HTTP address, host:port (port 0: any free port)"`
	NATSAddr    string        `env:"SOURCE_NATS_ADDR" envDefault:"127.0.0.1:4223" help:"the change feed's NATS broker, host:port (port 0: any free port); off: no feed"`
	Subject     string        `env:"SOURCE_SUBJECT" envDefault:"source.changed" help:"subject of the change events"`
	ChangeEvery time.Duration `env:"SOURCE_CHANGE_EVERY" envDefault:"0s" help:"change a random key every 0.5 to 1.5 times this (at least 1ms); 0: never"`
	Keys        int           `env:"SOURCE_KEYS" envDefault:"100" help:"keys at start, k0 to k<N-1> (0 to 1000000)"`
	cli.Logging
}

// Main runs the command with the process's arguments, environment and stdio, and
// exits: 0 after a clean stop, 2 for a usage error, 1 otherwise.
func Main(args []string) { cli.Main("source", args, run) }

func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	if cli.WantsHelp(args) {
		cli.Usage(stdout, synopsis, config{})
		return nil
	}
	cmd := ""
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	if len(args) > 0 {
		return cli.Usagef("unexpected argument %q (try --help)", args[0])
	}
	cfg, err := cli.Parse[config](environ)
	if err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	switch cmd {
	case "":
		log, err := cfg.NewLogger(stderr, slog.String("proc", "source"))
		if err != nil {
			return err
		}
		return serve(ctx, cfg, log)
	case "healthcheck":
		return healthcheck(ctx, cfg.Addr, stdout)
	default:
		return cli.Usagef("unknown command %q (try --help)", cmd)
	}
}

// serve runs the source until ctx is cancelled, then stops the timer and the HTTP
// server, and last the broker. It logs "source ready" with the bound addresses
// once both listen.
func serve(ctx context.Context, cfg config, log *slog.Logger) error {
	var fd *feed
	if cfg.NATSAddr != "off" {
		var err error
		if fd, err = startFeed(cfg.NATSAddr, cfg.Subject, log); err != nil {
			return fmt.Errorf("SOURCE_NATS_ADDR=%s: %w", cfg.NATSAddr, err) // e.g. the port is taken: not a usage error
		}
	}
	defer fd.Close()
	st, err := newStore(initialData(cfg.Keys), func(c change) {
		log.Debug("data changed", "version", c.Version, "op", c.Op, "key", c.Key, "by", c.By)
		fd.Publish(c.Version)
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("SOURCE_ADDR=%s: listen http: %w", cfg.Addr, err) // not a usage error
	}
	log.Info("source ready", "http", ln.Addr().String(), "nats", fd.Addr(), "subject", cfg.Subject,
		"keys", cfg.Keys, "changeEvery", cfg.ChangeEvery.String(), "version", st.Snapshot().version)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	if cfg.ChangeEvery > 0 {
		wg.Go(func() { runChanger(ctx, st, cfg.ChangeEvery, cfg.Keys, log) })
	}
	err = serveHTTP(ctx, ln, newAPI(st, log).handler())
	cancel() // if serving failed, stop the timer too
	wg.Wait()
	if err == nil {
		log.Info("source stopped")
	}
	return err
}
