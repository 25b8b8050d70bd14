// Package bustest starts a real bus for tests, as net/http/httptest starts a
// real HTTP server: a nats-server on 127.0.0.1 with a random port, and Conns
// with freshly minted credentials. Everything is closed in t.Cleanup.
package bustest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/broker"
)

// dialTimeout bounds Dial's first connect.
const dialTimeout = 10 * time.Second

// NewBroker starts a broker on 127.0.0.1 with a random port. It logs to t
// and is shut down in t.Cleanup.
func NewBroker(t testing.TB) *broker.Broker {
	t.Helper()
	return NewBrokerWith(t, broker.Config{})
}

// NewBrokerWith is NewBroker with cfg's other settings (stores, roles).
func NewBrokerWith(t testing.TB, cfg broker.Config) *broker.Broker {
	t.Helper()
	cfg.Port, cfg.Logger = -1, Logger(t)
	b, err := broker.Start(cfg)
	if err != nil {
		t.Fatalf("bustest.NewBroker: %v", err)
	}
	t.Cleanup(b.Shutdown)
	return b
}

// Dial mints a credential for role and id on b and connects with it (the
// master in-process, others over TCP). The Conn logs to t and is closed in
// t.Cleanup, before the broker is shut down.
func Dial(t testing.TB, b *broker.Broker, role bus.Role, id string) *bus.Conn {
	t.Helper()
	cred := b.Mint(role, id)
	o := bus.Options{
		URL:      b.ClientURL(),
		User:     cred.User,
		Password: cred.Password,
		ID:       id,
		Role:     role,
		Logger:   Logger(t),
	}
	if role == bus.RoleMaster {
		o.InProcess = b.InProcess()
	}
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	c, err := bus.Dial(ctx, o)
	if err != nil {
		t.Fatalf("bustest.Dial(%s, %q): %v", role, id, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close of %s %q: %v", role, id, err)
		}
	})
	return c
}

// Logger returns a logger that writes to t's log until the test ends and
// then discards, so a late log line cannot fail a finished test.
func Logger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu    sync.Mutex
	t     testing.TB
	ended bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ended {
		return io.Discard.Write(p)
	}
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.ended = true
	w.mu.Unlock()
}

// DialHost is Dial for a process of a fleet host: host is its host's name and
// domain the cluster's JetStream domain (b must have been started with a
// broker.Fleet of that host).
func DialHost(t testing.TB, b *broker.Broker, role bus.Role, id, host, domain string) *bus.Conn {
	t.Helper()
	cred := b.Mint(role, id)
	o := bus.Options{URL: b.ClientURL(), User: cred.User, Password: cred.Password, ID: id, Role: role,
		Logger: Logger(t), Host: host, Domain: domain}
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	c, err := bus.Dial(ctx, o)
	if err != nil {
		t.Fatalf("bustest.DialHost(%s, %q, %q): %v", role, id, host, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Cluster is a one-server NATS "cluster" for fleet tests: JetStream in domain
// Domain, clients on ClientURL, leaf nodes on LeafURL.
type Cluster struct {
	Srv       *server.Server
	ClientURL string
	LeafURL   *url.URL
	t         testing.TB
	opts      *server.Options
}

// ClusterDomain is the JetStream domain of NewCluster's server.
const ClusterDomain = "fleet"

// NewCluster starts a NATS server with JetStream (domain ClusterDomain, on
// disk in a temporary directory) and a leaf node listener, on loopback ports
// of its choice. It is shut down in t.Cleanup.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a free port for the leaf listener
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	c := &Cluster{t: t, opts: &server.Options{
		Host: "127.0.0.1", Port: -1, NoSigs: true, JetStream: true, JetStreamDomain: ClusterDomain,
		StoreDir: t.TempDir(), LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: port},
	}}
	c.LeafURL, _ = url.Parse(fmt.Sprintf("nats://127.0.0.1:%d", port))
	c.Start()
	t.Cleanup(func() { c.Srv.Shutdown() })
	return c
}

// Start starts the server again after Stop, on the same ports and with the
// same stores.
func (c *Cluster) Start() {
	c.t.Helper()
	opts := *c.opts
	srv, err := server.NewServer(&opts)
	if err != nil {
		c.t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(dialTimeout) {
		c.t.Fatal("bustest.Cluster: not ready")
	}
	if c.opts.Port == -1 { // the next start takes the same client port
		c.opts.Port = srv.Addr().(*net.TCPAddr).Port
	}
	c.Srv, c.ClientURL = srv, srv.ClientURL()
}

// Stop stops the server and waits until it is down.
func (c *Cluster) Stop() {
	c.Srv.Shutdown()
	c.Srv.WaitForShutdown()
}
