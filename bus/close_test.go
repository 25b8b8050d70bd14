package bus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/bustest"
)

// TestCloseSendsRepliesInFlight: the agent's Close begins while its handler
// of a worker's request (a fetch, say) is still running. The handler is let
// go only once Close is under way: when the agent says it waits for it, or,
// as before the fix, once the agent's connection is closed already. The
// worker gets the reply, not a timeout; and a request after Close finds no
// receiver, so that the worker can fall back.
func TestCloseSendsRepliesInFlight(t *testing.T) {
	b := bustest.NewBroker(t)
	log, rec := bustest.NewRecorder(t)
	cred := b.Mint(bus.RoleAgent, agentID)
	agent, err := bus.Dial(t.Context(), bus.Options{
		URL: b.ClientURL(), User: cred.User, Password: cred.Password, ID: agentID, Role: bus.RoleAgent, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agent.Close() }) // closed again: a no-op
	w1 := bustest.Dial(t, b, bus.RoleWorker, "w1")

	started, release := make(chan struct{}), make(chan struct{})
	err = agent.On("fetch", func(context.Context, bus.Message) (any, error) {
		close(started)
		<-release
		return "fetched", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		m   bus.Message
		err error
	}
	replied := make(chan result, 1)
	rctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	go func() { // the test waits for it below
		m, err := w1.RequestAgent(rctx, "fetch", nil)
		replied <- result{m, err}
	}()
	select {
	case <-started:
	case <-time.After(wait):
		close(release)
		t.Fatal("the agent's handler did not start")
	}

	closed := make(chan error, 1)
	go func() { closed <- agent.Close() }()
	waiting := func() bool {
		for _, r := range rec.Records() {
			if r.Message == "bus: close: waiting for the request handlers under way" {
				return true
			}
		}
		return false
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(wait)
poll:
	for !waiting() {
		select {
		case <-agent.Done():
			break poll
		case <-tick.C:
		case <-deadline:
			close(release)
			t.Fatal("Close of the agent neither waited for its handler nor closed the connection")
		}
	}
	close(release)

	r := <-replied
	var got string
	if r.err != nil || r.m.Decode(&got) != nil || got != "fetched" || r.m.From != agentID {
		t.Errorf("RequestAgent(fetch) answered while the agent closes = %q from %q, %v; want \"fetched\" from %s",
			r.m.Data, r.m.From, r.err, agentID)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close of the agent = %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Close of the agent did not return")
	}

	ctx, cancel2 := context.WithTimeout(t.Context(), 150*time.Millisecond)
	defer cancel2()
	if _, err := w1.RequestAgent(ctx, "fetch", nil); !errors.Is(err, bus.ErrNoReceiver) {
		t.Errorf("RequestAgent(fetch) after the agent closed = %v, want ErrNoReceiver", err)
	}
}
