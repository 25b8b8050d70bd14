package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/broker"
	"github.com/yolkgo/yolk/bus/bustest"
)

type left struct {
	role bus.Role
	id   string
}

// startWatched starts a broker with role secrets that reports disconnects on
// the returned channel.
func startWatched(t *testing.T, roles map[bus.Role]string) (*broker.Broker, chan left) {
	t.Helper()
	gone := make(chan left, 100)
	b, err := broker.Start(broker.Config{
		Port: -1, Logger: bustest.Logger(t), Roles: roles,
		OnDisconnect: func(role bus.Role, id string) { gone <- left{role, id} },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	return b, gone
}

func dialRole(t *testing.T, b *broker.Broker, role bus.Role, secret, id string) *bus.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	c, err := bus.Dial(ctx, bus.Options{
		URL: b.ClientURL(), User: string(role), Password: secret,
		ID: id, Role: role, Logger: bustest.Logger(t),
	})
	if err != nil {
		t.Fatalf("Dial as %s %s: %v", role, id, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func wantGone(t *testing.T, gone chan left, want left) {
	t.Helper()
	select {
	case got := <-gone:
		if got != want {
			t.Fatalf("OnDisconnect(%s, %s), want (%s, %s)", got.role, got.id, want.role, want.id)
		}
	case <-time.After(wait):
		t.Fatalf("no OnDisconnect(%s, %s) within %v", want.role, want.id, wait)
	}
}

func wantNothingGone(t *testing.T, gone chan left) {
	t.Helper()
	select {
	case got := <-gone:
		t.Fatalf("OnDisconnect(%s, %s), want none", got.role, got.id)
	case <-time.After(3 * broker.DisconnectPoll):
	}
}

func TestConnectedAndDisconnect(t *testing.T) {
	const agentSecret, workerSecret = "agent-secret-1", "worker-secret-1"
	b, gone := startWatched(t, map[bus.Role]string{bus.RoleAgent: agentSecret, bus.RoleWorker: workerSecret})

	agent := dialRole(t, b, bus.RoleAgent, agentSecret, "agent-1")
	w1 := dialRole(t, b, bus.RoleWorker, workerSecret, "worker-1")
	for id, want := range map[string]bus.Role{"agent-1": bus.RoleAgent, "worker-1": bus.RoleWorker} {
		if role, ok := b.Connected(id); !ok || role != want {
			t.Errorf("Connected(%s) = %s, %v; want %s, true", id, role, ok, want)
		}
	}
	if role, ok := b.Connected("worker-2"); ok {
		t.Errorf("Connected(worker-2) = %s, true; want false", role)
	}

	// A second connection with the same id (a reconnect seen before the old
	// one's close): closing one of the two is not the process leaving.
	w1b := dialRole(t, b, bus.RoleWorker, workerSecret, "worker-1")
	w1.Close()
	wantNothingGone(t, gone)
	if _, ok := b.Connected("worker-1"); !ok {
		t.Error("Connected(worker-1) = false with one of its two connections open")
	}
	w1b.Close()
	wantGone(t, gone, left{bus.RoleWorker, "worker-1"})
	if _, ok := b.Connected("worker-1"); ok {
		t.Error("Connected(worker-1) = true after its connections closed")
	}
	agent.Close()
	wantGone(t, gone, left{bus.RoleAgent, "agent-1"})

	// A worker may not pass as the agent: its secret admits only ids that
	// start with worker-, and the role comes from the credential.
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	c, err := bus.Dial(ctx, bus.Options{
		URL: b.ClientURL(), User: string(bus.RoleWorker), Password: workerSecret,
		ID: "agent-2", Role: bus.RoleWorker, Logger: bustest.Logger(t),
	})
	if err == nil {
		c.Close()
		t.Error("Dial with the worker secret as agent-2 succeeded, want it refused")
	}
	if role, ok := b.Connected("agent-2"); ok {
		t.Errorf("Connected(agent-2) = %s, true after a refused connection; want false", role)
	}
	dialRole(t, b, bus.RoleAgent, agentSecret, "agent-2")
	if role, ok := b.Connected("agent-2"); !ok || role != bus.RoleAgent {
		t.Errorf("Connected(agent-2) = %s, %v; want agent, true", role, ok)
	}
	// Two credentials the master minted for one id in two roles: neither counts.
	bustest.Dial(t, b, bus.RoleWorker, "both-1")
	bustest.Dial(t, b, bus.RoleAgent, "both-1")
	if role, ok := b.Connected("both-1"); ok {
		t.Errorf("Connected(both-1) with two roles = %s, true; want false", role)
	}
}

func TestStartRolesAreChecked(t *testing.T) {
	const secret = "s3cr3t-never-printed"
	for _, roles := range []map[bus.Role]string{
		{"root": secret},
		{bus.RoleAgent: ""},
	} {
		b, err := broker.Start(broker.Config{Port: -1, Logger: bustest.Logger(t), Roles: roles})
		if err == nil {
			b.Shutdown()
			t.Errorf("Start with Roles %v = nil, want an error", roles)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Start error %q names the secret", err)
		}
	}
}

func TestNoDisconnectAfterShutdown(t *testing.T) {
	b, gone := startWatched(t, map[bus.Role]string{bus.RoleWorker: "w"})
	dialRole(t, b, bus.RoleWorker, "w", "worker-1") // it reconnects in vain until its cleanup
	b.Shutdown()
	wantNothingGone(t, gone)
}
