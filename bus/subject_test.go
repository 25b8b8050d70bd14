package bus

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestValidEvent(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"refresh", true},
		{"yolk-ready", true},
		{"cache_refresh:v2", true},
		{"日本", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{strings.Repeat("a", 65), false},
		{"a.b", false},
		{"a*", false},
		{">", false},
		{"a b", false},
		{"a\tb", false},
		{"a\nb", false},
		{"a\x7fb", false},
		{`a"b`, false},
		{`a\b`, false},
		{"\xff", false},
		{"a\u00a0b", false},
		{"a\u2028b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidEvent(tt.name)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidEvent(%q) = %v, want ok %v", tt.name, err, tt.ok)
			}
			if err != nil && (!errors.Is(err, ErrBadEvent) || !strings.HasPrefix(err.Error(), "bus: ")) {
				t.Errorf("ValidEvent(%q) = %v, want an error wrapping ErrBadEvent, prefixed bus:", tt.name, err)
			}
			idErr := ValidID(tt.name)
			if (idErr == nil) != tt.ok {
				t.Errorf("ValidID(%q) = %v, want ok %v", tt.name, idErr, tt.ok)
			}
			if idErr != nil && !errors.Is(idErr, ErrBadID) {
				t.Errorf("ValidID(%q) = %v, want an error wrapping ErrBadID", tt.name, idErr)
			}
		})
	}
}

func TestEventFrom(t *testing.T) {
	tests := []struct {
		subject, event, from string
		ok                   bool
	}{
		{"yolk.all.refresh.123", "refresh", "123", true},
		{"yolk.to.w1.refresh.agent-1", "refresh", "agent-1", true},
		{"refresh.123", "refresh", "123", true},
		{"refresh", "", "", false},
	}
	for _, tt := range tests {
		event, from, ok := eventFrom(tt.subject)
		if event != tt.event || from != tt.from || ok != tt.ok {
			t.Errorf("eventFrom(%q) = %q, %q, %v, want %q, %q, %v",
				tt.subject, event, from, ok, tt.event, tt.from, tt.ok)
		}
	}
}

func TestPermissions(t *testing.T) {
	tests := []struct {
		role      Role
		id        string
		pub, sub  []string
		responses bool
	}{
		{
			role: RoleWorker, id: "w1",
			pub: []string{"yolk.all.*.w1", "yolk.app.*.w1", "yolk.agent.*.w1", "yolk.to.*.*.w1",
				"yolk.random.*.w1", "yolk.master.ready.w1", "yolk.master.state.w1"},
			sub:       []string{"yolk.all.*.*", "yolk.app.*.*", "yolk.to.w1.*.*", "yolk.random.*.* app", "yolk.inbox.w1.>"},
			responses: true,
		},
		{
			role: RoleAgent, id: "a1",
			pub: []string{"yolk.all.*.a1", "yolk.app.*.a1", "yolk.agent.*.a1", "yolk.to.*.*.a1",
				"yolk.random.*.a1", "yolk.master.ready.a1", "yolk.master.state.a1"},
			sub:       []string{"yolk.all.*.*", "yolk.agent.*.*", "yolk.to.a1.*.*", "yolk.inbox.a1.>"},
			responses: true,
		},
		{role: RoleMaster, id: "master", pub: []string{"yolk.>"}, sub: []string{"yolk.>"}},
		{
			role: RoleControl, id: "ctl",
			pub: []string{"yolk.master.status.ctl", "yolk.master.reload.ctl"},
			sub: []string{"yolk.inbox.ctl.>"},
		},
		{role: "nobody", id: "x", pub: []string{}, sub: []string{}},
		{role: RoleWorker, id: "a.b", pub: []string{}, sub: []string{}},
		{role: RoleWorker, id: "", pub: []string{}, sub: []string{}},
	}
	for _, tt := range tests {
		t.Run(string(tt.role)+"/"+tt.id, func(t *testing.T) {
			p := Permissions(tt.role, tt.id)
			if !slices.Equal(p.Publish, tt.pub) {
				t.Errorf("Permissions(%s, %q).Publish = %q, want %q", tt.role, tt.id, p.Publish, tt.pub)
			}
			if !slices.Equal(p.Subscribe, tt.sub) {
				t.Errorf("Permissions(%s, %q).Subscribe = %q, want %q", tt.role, tt.id, p.Subscribe, tt.sub)
			}
			if p.AllowResponses != tt.responses {
				t.Errorf("Permissions(%s, %q).AllowResponses = %v, want %v", tt.role, tt.id, p.AllowResponses, tt.responses)
			}
		})
	}
}

// TestRoutesWithinPermissions checks that every route a Conn subscribes is
// allowed by its role's subscribe permissions, literally.
func TestRoutesWithinPermissions(t *testing.T) {
	for _, fleet := range []bool{false, true} {
		for _, role := range []Role{RoleMaster, RoleAgent, RoleWorker, RoleControl} {
			p := Permissions(role, "id1")
			if fleet {
				f := FleetPermissions(role, "h1", "id1")
				p.Subscribe = append(p.Subscribe, f.Subscribe...)
			}
			for _, r := range routes(role, "id1", fleet) {
				entry := r.subject
				if r.queue != "" {
					entry += " " + r.queue
				}
				if role != RoleMaster && !slices.Contains(p.Subscribe, entry) {
					t.Errorf("routes(%s, fleet %v) subscribes %q, not in its permissions %q", role, fleet, entry, p.Subscribe)
				}
			}
		}
	}
}

func TestValidSubject(t *testing.T) {
	for s, want := range map[string]bool{
		"source.changed": true, "a": true, "-1": true, "ünï": true,
		"": false, "a..b": false, ".a": false, "a.": false, "a.*": false, "a.>": false, "a*b": false,
		"a b": false, "a\tb": false, "a\nb": false, "a\x01b": false, "a\u00a0b": false, "\xff": false,
		strings.Repeat("a", 1025): false, strings.Repeat("a", 1024): true,
	} {
		if got := ValidSubject(s); got != want {
			t.Errorf("ValidSubject(%.20q) = %v, want %v", s, got, want)
		}
	}
}
