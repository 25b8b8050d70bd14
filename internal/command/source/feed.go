package source

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// feedStartTimeout bounds how long the embedded broker may take to listen. It
// starts in milliseconds; a listen error ends the wait at once.
const feedStartTimeout = 10 * time.Second

// feed is the change feed: an embedded NATS broker, standing for a third party's,
// and an in-process connection that publishes {"version":"<v>"} on its subject.
// A nil *feed is a feed that is off: Publish and Close do nothing.
type feed struct {
	srv     *server.Server
	nc      *nats.Conn
	subject string
	log     *slog.Logger
}

// startFeed starts the broker on addr (host:port; port 0 picks a free one) with no
// auth and no listener but the client port, and connects to it in process. The
// caller closes the feed.
func startFeed(addr, subject string, log *slog.Logger) (*feed, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("feed address: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("feed address: %w", err)
	}
	if port == 0 {
		port = server.RANDOM_PORT // nats-server reads 0 as its default port, 4222
	}
	srv, err := server.NewServer(&server.Options{
		ServerName:      "yolk-source",
		Host:            host,
		Port:            port,
		NoSigs:          true,
		NoSystemAccount: true,
	})
	if err != nil {
		return nil, fmt.Errorf("feed broker: %w", err)
	}
	logs := &brokerLog{log: log.With("component", "broker")}
	srv.SetLoggerV2(logs, false, false, false)
	srv.Start()
	if err := waitListening(srv, logs); err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, err
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Name("source-feed"))
	if err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("feed connect: %w", err)
	}
	return &feed{srv: srv, nc: nc, subject: subject, log: log}, nil
}

// waitListening waits until srv accepts clients, or its listener fails.
func waitListening(srv *server.Server, logs *brokerLog) error {
	deadline := time.Now().Add(feedStartTimeout)
	for !srv.ReadyForConnections(25 * time.Millisecond) {
		if err := logs.fatal(); err != nil {
			return fmt.Errorf("feed broker: %w", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("feed broker: not listening after %s", feedStartTimeout)
		}
	}
	return nil
}

// Addr is the address the broker listens on, or "off".
func (f *feed) Addr() string {
	if f == nil {
		return "off"
	}
	return f.srv.Addr().String()
}

// Publish announces version on the feed. A failure is logged: the HTTP side has
// the change already, and consumers also poll.
func (f *feed) Publish(version string) {
	if f == nil {
		return
	}
	msg, _ := json.Marshal(struct {
		Version string `json:"version"`
	}{version})
	if err := f.nc.Publish(f.subject, msg); err != nil {
		f.log.Warn("publish change", "version", version, "err", err)
	}
}

// Close flushes what was published, closes the connection and shuts the broker
// down, waiting until it has stopped.
func (f *feed) Close() {
	if f == nil {
		return
	}
	if err := f.nc.Flush(); err != nil {
		f.log.Warn("flush change feed", "err", err)
	}
	f.nc.Close()
	f.srv.Shutdown()
	f.srv.WaitForShutdown()
}

// brokerLog sends the broker's log to slog and keeps its first fatal error, which
// the broker reports (for a failed listen) without stopping.
type brokerLog struct {
	log *slog.Logger

	mu       sync.Mutex
	fatalErr error
}

func (l *brokerLog) fatal() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatalErr
}

func (l *brokerLog) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *brokerLog) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *brokerLog) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *brokerLog) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *brokerLog) Tracef(format string, v ...any)  {}

func (l *brokerLog) Fatalf(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fatalErr == nil { // returned by startFeed, so not logged here
		l.fatalErr = fmt.Errorf(format, v...)
	}
}
