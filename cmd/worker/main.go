// Command worker is a yolk worker: it serves the HTTP API on the shared port and
// answers events on the bus. It is normally started by the master.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/internal/cli"
	"github.com/yolkgo/yolk/supervisor"
)

const synopsis = `
worker: a yolk worker: serves HTTP on the shared port from its memory.

Usage:
  worker          connect to the bus and serve (normally started by the master)
  worker --help   this text`

type config struct {
	cli.Bus
	HTTPAddr        string        `env:"YOLK_HTTP_ADDR" envDefault:":7001" help:"HTTP address (fork mode: the socket comes from the master)"`
	ListenFD        int           `env:"YOLK_LISTEN_FD" help:"inherited listening socket (set by the master)"`
	ReadyTimeout    time.Duration `env:"YOLK_READY_TIMEOUT" envDefault:"30s" help:"how long to try to report ready"`
	ShutdownTimeout time.Duration `env:"YOLK_SHUTDOWN_TIMEOUT" envDefault:"30s" help:"how long in-flight requests may take to finish on stop"`
	cli.Logging
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop) // first signal: graceful stop; a second one kills
	if err := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "worker: %v\n", err)
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
	log, err := cfg.NewLogger(stderr, slog.String("proc", "worker"), slog.String("id", cfg.ID))
	if err != nil {
		return err
	}
	ln, err := listen(cfg)
	if err != nil {
		return err
	}
	defer ln.Close()

	conn, err := bus.Dial(ctx, bus.Options{
		URL: cfg.URL, User: cfg.User, Password: cfg.Secret,
		ID: cfg.ID, Role: bus.RoleWorker, Logger: log,
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.On("yolk-ready", func(context.Context, bus.Message) (any, error) {
		log.Info("every process is ready")
		return nil, nil
	}); err != nil {
		return err
	}

	srv := newServer(cfg.ID, log)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	rctx, cancel := context.WithTimeout(ctx, cfg.ReadyTimeout)
	err = conn.SendToMaster(rctx, "ready", nil)
	cancel()
	if err != nil {
		ln.Close()
		<-served
		return fmt.Errorf("report ready: %w", err)
	}
	srv.setReady()
	log.Info("worker ready", "addr", ln.Addr().String())

	var reason error
	select {
	case <-ctx.Done():
		log.Info("stopping")
	case <-supervisor.Lifeline(environ):
		reason = errors.New("the master is gone; exiting")
	case <-conn.Done():
		reason = errors.New("bus connection closed")
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	}
	// Close the listener first and let Serve return: connections still queued on the
	// shared socket go to the other workers. Then wait for in-flight requests.
	ln.Close()
	<-served
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return reason
}

// listen returns the socket inherited from the master, or in external mode its own
// listener on the shared address, bound with SO_REUSEPORT so every worker of the pod
// can bind it.
func listen(cfg config) (net.Listener, error) {
	if cfg.ListenFD > 0 {
		f := os.NewFile(uintptr(cfg.ListenFD), "listener")
		if f == nil {
			return nil, cli.BadValue("YOLK_LISTEN_FD", strconv.Itoa(cfg.ListenFD), "not an open file")
		}
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
}

func newServer(id string, log *slog.Logger) *server {
	s := &server{ready: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-s.ready:
			io.WriteString(w, "ready\n")
		default:
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "yolk worker %s\n", id)
	})
	s.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Yolk-Worker", id)
		mux.ServeHTTP(w, r)
	})
	s.ReadHeaderTimeout = 10 * time.Second
	s.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	return s
}

func (s *server) setReady() { close(s.ready) }
