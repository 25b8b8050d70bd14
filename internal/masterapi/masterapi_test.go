package masterapi

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestStateCheck(t *testing.T) {
	for _, tt := range []struct {
		st State
		ok bool
	}{
		{State{Version: "12", By: "push"}, true},
		{State{Version: `W/"x"`, By: "catchup"}, true},
		{State{Version: strings.Repeat("9", 256), By: "force"}, true},
		{State{Version: "", By: "push"}, false},
		{State{Version: strings.Repeat("9", 257), By: "push"}, false},
		{State{Version: "1\x1b[2J", By: "push"}, false},
		{State{Version: "1 2", By: "push"}, false},
		{State{Version: "é", By: "push"}, false},
		{State{Version: "1", By: "push\n"}, false},
		{State{Version: "1", By: strings.Repeat("a", 33)}, false},
	} {
		if err := tt.st.Check(); (err == nil) != tt.ok {
			t.Errorf("%+v.Check() = %v, want ok %v", tt.st, err, tt.ok)
		}
	}
}

func TestHeartbeatCheck(t *testing.T) {
	runs := func(n int) []RunResult {
		out := make([]RunResult, n)
		for i := range out {
			out[i] = RunResult{Name: fmt.Sprint("job", i), Outcome: "ok"}
		}
		return out
	}
	sent := func(n int) map[string]uint64 {
		out := make(map[string]uint64)
		for i := range n {
			out["v"+strings.Repeat("a", i)] = 1
		}
		return out
	}
	for _, tt := range []struct {
		name string
		hb   Heartbeat
		ok   bool
	}{
		{"empty", Heartbeat{}, true},
		{"a real one", Heartbeat{Sent: map[string]uint64{"sendToApp": 3, "requestMaster": 1},
			Schedules: []Planned{{Name: "pull_refresh", Type: "worker", Every: "*/5 * * * *"}},
			Runs:      []RunResult{{Name: "pull_refresh", Outcome: "timeout", Err: "context deadline exceeded"}}}, true},
		{"64 runs", Heartbeat{Runs: runs(64)}, true},
		{"65 runs", Heartbeat{Runs: runs(65)}, false},
		{"65 schedules", Heartbeat{Schedules: make([]Planned, 65)}, false},
		{"16 verbs", Heartbeat{Sent: sent(16)}, true},
		{"17 verbs", Heartbeat{Sent: sent(17)}, false},
		{"a verb with a digit", Heartbeat{Sent: map[string]uint64{"send2": 1}}, false},
		{"a long verb", Heartbeat{Sent: map[string]uint64{strings.Repeat("a", 33): 1}}, false},
		{"an empty name", Heartbeat{Runs: []RunResult{{Outcome: "ok"}}}, false},
		{"a name with an escape", Heartbeat{Schedules: []Planned{{Name: "a\x1b[2J", Type: "all"}}}, false},
		{"a long name", Heartbeat{Schedules: []Planned{{Name: strings.Repeat("n", 65), Type: "all"}}}, false},
		{"a long every", Heartbeat{Schedules: []Planned{{Name: "n", Type: "all", Every: strings.Repeat("1", 65)}}}, false},
		{"an odd type", Heartbeat{Schedules: []Planned{{Name: "n", Type: "All"}}}, false},
		{"an unknown outcome", Heartbeat{Runs: []RunResult{{Name: "n", Outcome: "<b>"}}}, false},
	} {
		if err := tt.hb.Check(); (err == nil) != tt.ok {
			t.Errorf("%s: Check() = %v, want ok %v", tt.name, err, tt.ok)
		}
	}

	hb := Heartbeat{Stalled: strings.Repeat("s", 300), Runs: []RunResult{{Name: "n", Outcome: "error", Err: strings.Repeat("é", 200)}}}
	if err := hb.Check(); err != nil {
		t.Fatalf("Check() of a long Err = %v, want it cut", err)
	}
	if e := hb.Runs[0].Err; len(e) > MaxErr || len(e) < MaxErr-1 || !utf8.ValidString(e) {
		t.Errorf("Check() cut Err to %d bytes (valid UTF-8 %v), want %d or one less, valid", len(e), utf8.ValidString(e), MaxErr)
	}
	if len(hb.Stalled) != MaxErr {
		t.Errorf("Check() cut Stalled to %d bytes, want %d", len(hb.Stalled), MaxErr)
	}
}
