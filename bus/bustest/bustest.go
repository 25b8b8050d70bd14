// Package bustest starts a real bus for tests, as net/http/httptest starts a
// real HTTP server: a nats-server on 127.0.0.1 with a random port, and Conns
// with freshly minted credentials. Everything is closed in t.Cleanup.
package bustest

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

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
