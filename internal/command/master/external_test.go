package master

import (
	"io"
	"log/slog"
	"testing"

	"github.com/yolkgo/yolk/bus"
)

func TestMembers(t *testing.T) {
	ms := newMembers(slog.New(slog.NewTextHandler(io.Discard, nil)))
	conns := map[string]bus.Role{"agent-1": bus.RoleAgent, "worker-1": bus.RoleWorker, "worker-2": bus.RoleWorker, "worker-3": bus.RoleWorker, "ctl": bus.RoleControl}
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

	if got[1].Slot != 0 || got[2].Slot != 1 {
		t.Errorf("slots of worker-2, worker-1 = %d, %d; want 0, 1 in the order they joined", got[1].Slot, got[2].Slot)
	}
	// The oldest worker leaves: the others keep their slots, and a new one
	// takes the lowest free.
	ms.left(bus.RoleWorker, "worker-2")
	if err := ms.joined("worker-3", connected); err != nil {
		t.Fatalf("joined(worker-3) = %v", err)
	}
	slots := make(map[string]int)
	for _, p := range ms.list() {
		slots[p.ID] = p.Slot
	}
	if slots["worker-1"] != 1 || slots["worker-3"] != 0 {
		t.Errorf("slots after worker-2 left and worker-3 joined = %v, want worker-1 in 1, worker-3 in 0", slots)
	}

	ms.left(bus.RoleAgent, "worker-1") // another role's connection with that id: not this member
	ms.left(bus.RoleWorker, "worker-1")
	ms.left(bus.RoleWorker, "worker-3")
	if err := readiness(ms.list()); err == nil || err.Error() != "no worker is ready" {
		t.Errorf("readiness after the workers left = %v, want no worker is ready", err)
	}
	if n := ms.count("agent"); n != 1 {
		t.Errorf("count(agent) = %d, want 1", n)
	}
}
