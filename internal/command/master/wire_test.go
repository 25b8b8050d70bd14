package master

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/bustest"
)

func TestWireGate(t *testing.T) {
	ready := func(id string, role bus.Role, data string) bus.Message {
		return bus.Message{Event: "ready", From: id, Role: role, Data: json.RawMessage(data)}
	}
	const older, current, newer = `null`, `{"wire":2}`, `{"wire":3}`
	type step struct {
		data    string
		want    int    // the version the child is told
		refused string // or a part of the error
	}
	tests := []struct {
		name       string
		steps      []step
		masterSend int // what the master's own Conn sends after the steps
	}{
		{"every child current", []step{{current, 2, ""}, {current, 2, ""}, {current, 2, ""}}, 2},
		{"a newer child", []step{{current, 2, ""}, {newer, 2, ""}}, 2},
		{"an older child first", []step{{older, 1, ""}, {current, 1, ""}, {newer, 1, ""}}, 1},
		{"an older child later", []step{{current, 2, ""}, {older, 0, "older yolk"}, {current, 2, ""}}, 2},
		{"a version 1 said", []step{{`{"wire":1}`, 1, ""}, {older, 1, ""}}, 1},
		{"bad data", []step{{`{"wire":"x"}`, 0, "cannot unmarshal"}, {current, 2, ""}}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := bustest.Dial(t, bustest.NewBroker(t), bus.RoleMaster, bus.MasterID)
			g := newWireGate(conn)
			if conn.Wire() != 1 {
				t.Fatalf("the master sends wire %d before any child is ready, want 1", conn.Wire())
			}
			for i, s := range tt.steps {
				got, err := g.admit(ready(strconv.Itoa(100+i), bus.RoleWorker, s.data))
				switch {
				case s.refused != "" && (err == nil || !strings.Contains(err.Error(), s.refused)):
					t.Errorf("step %d (%s): admit = %d, %v; want an error with %q", i, s.data, got, err, s.refused)
				case s.refused == "" && (err != nil || got != s.want):
					t.Errorf("step %d (%s): admit = %d, %v; want %d", i, s.data, got, err, s.want)
				}
			}
			if conn.Wire() != tt.masterSend {
				t.Errorf("the master sends wire %d, want %d", conn.Wire(), tt.masterSend)
			}
		})
	}
}
