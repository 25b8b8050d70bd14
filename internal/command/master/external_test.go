package master

import (
	"io"
	"log/slog"
	"testing"

	"github.com/yolkgo/yolk/bus"
)

func TestMembers(t *testing.T) {
	ms := newMembers(slog.New(slog.NewTextHandler(io.Discard, nil)))
	conns := map[string]bus.Role{"agent-1": bus.RoleAgent, "worker-1": bus.RoleWorker, "worker-2": bus.RoleWorker, "ctl": bus.RoleControl}
	connected := func(id string) (bus.Role, bool) { r, ok := conns[id]; return r, ok }

	if err := readiness(ms.list()); err == nil {
		t.Error("readiness with no member = nil, want an error")
	}
	for _, id := range []string{"gone-1", "ctl"} {
		if err := ms.joined(id, connected); err == nil {
			t.Errorf("joined(%s) = nil, want it refused", id)
		}
	}
	for _, id := range []string{"worker-2", "agent-1", "worker-1", "worker-1"} {
		if err := ms.joined(id, connected); err != nil {
			t.Fatalf("joined(%s) = %v", id, err)
		}
	}
	select {
	case <-ms.changed:
	default:
		t.Error("no change signalled after joins")
	}
	got := ms.list()
	if len(got) != 3 || got[0].Role != "agent" || got[1].ID != "worker-2" || got[2].ID != "worker-1" {
		t.Errorf("list() = %+v, want the agent, then worker-2 and worker-1 by age", got)
	}
	if err := readiness(got); err != nil {
		t.Errorf("readiness with the agent and two workers = %v, want nil", err)
	}

	ms.left(bus.RoleAgent, "worker-1") // another role's connection with that id: not this member
	ms.left(bus.RoleWorker, "worker-1")
	ms.left(bus.RoleWorker, "worker-2")
	if err := readiness(ms.list()); err == nil || err.Error() != "no worker is ready" {
		t.Errorf("readiness after the workers left = %v, want no worker is ready", err)
	}
	if n := ms.count("agent"); n != 1 {
		t.Errorf("count(agent) = %d, want 1", n)
	}
}
