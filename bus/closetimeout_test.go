package bus

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// TestCloseTimeout: a request handler that runs past the drain timeout does
// not hold Close for longer: its ctx is cancelled as the connection closes,
// Close waits for it to return and says that it timed out. (A plain
// nats-server without credentials: bus/broker imports this package.)
func TestCloseTimeout(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	dial := func(role Role, id string) *Conn {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		c, err := Dial(ctx, Options{URL: s.ClientURL(), ID: id, Role: role, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	agent, w1 := dial(RoleAgent, "a1"), dial(RoleWorker, "w1")
	const timeout = 200 * time.Millisecond
	agent.nc.Opts.DrainTimeout = timeout

	started, stopped := make(chan struct{}), make(chan error, 1)
	err = agent.On("stuck", func(ctx context.Context, _ Message) (any, error) {
		close(started)
		<-ctx.Done()
		stopped <- ctx.Err()
		return nil, ctx.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	asked := make(chan error, 1)
	go func() { // the test waits for it below
		_, err := w1.RequestAgent(rctx, "stuck", nil)
		asked <- err
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not start")
	}

	begin := time.Now()
	err = agent.Close()
	took := time.Since(begin)
	if !errors.Is(err, nats.ErrDrainTimeout) {
		t.Errorf("Close with a handler stuck past the drain timeout = %v, want ErrDrainTimeout", err)
	}
	if took < timeout || took > timeout+5*time.Second {
		t.Errorf("Close with a handler stuck took %v, want about the drain timeout %v", took, timeout)
	}
	select {
	case err := <-stopped:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the stuck handler's ctx ended with %v, want Canceled", err)
		}
	default:
		t.Error("Close returned before the stuck handler did")
	}
	cancel()
	<-asked
}
