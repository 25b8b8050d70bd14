package bus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/bustest"
)

// sent names one call of TestMasterRoute: its payload, and what the master's
// handlers record when they are reached.
type sent struct {
	Role  bus.Role
	Verb  string
	Event string
}

// TestMasterRoute sends each of the master's events (status and reload for
// the control command, ready and state for its children) from every role
// with every verb, all at once. The master handles them with OnMaster, as
// internal/command/master does; the agent and a worker have handlers of On
// for the same names, so that the verbs meant for them have a receiver.
//
// Only the control credential's SendToMaster and RequestMaster reach status
// and reload, and only the agent's and the worker's reach ready and state.
// What the others get:
//   - Broadcast, SendToApp: nil; the master drops it (no handler of On), a
//     control's publish is refused by the bus and logged.
//   - SendTo and Request to the master's id: ErrNoReceiver (the master has no
//     handler of On for it, and says so); from the control role an error,
//     its publish being refused.
//   - SendToMaster, RequestMaster of an event the role may not send: an
//     error when ctx ends (the bus refuses it); from the master itself an
//     error at once.
//   - SendToAgent, SendRandom, RequestAgent, Gather: nil, handled by the
//     agent or the worker and never by the master; an error from the
//     control role, which may send none of them.
func TestMasterRoute(t *testing.T) {
	b := bustest.NewBroker(t)
	conns := map[bus.Role]*bus.Conn{
		bus.RoleMaster:  bustest.Dial(t, b, bus.RoleMaster, bus.MasterID),
		bus.RoleAgent:   bustest.Dial(t, b, bus.RoleAgent, agentID),
		bus.RoleWorker:  bustest.Dial(t, b, bus.RoleWorker, "w1"),
		bus.RoleControl: bustest.Dial(t, b, bus.RoleControl, bus.ControlID),
	}
	events := []string{"status", "reload", "ready", "state"}

	var mu sync.Mutex
	reached := make(map[sent]int)
	for _, ev := range events {
		err := conns[bus.RoleMaster].OnMaster(ev, func(_ context.Context, m bus.Message) (any, error) {
			var s sent
			if err := m.Decode(&s); err != nil {
				return nil, err
			}
			mu.Lock()
			reached[s]++
			mu.Unlock()
			return "master got " + m.Event, nil
		})
		if err != nil {
			t.Fatalf("OnMaster(%s): %v", ev, err)
		}
		for _, role := range []bus.Role{bus.RoleAgent, bus.RoleWorker} {
			err := conns[role].On(ev, func(context.Context, bus.Message) (any, error) { return "app event", nil })
			if err != nil {
				t.Fatalf("On(%s) at the %s: %v", ev, role, err)
			}
		}
	}

	type verb struct {
		name string
		call func(ctx context.Context, c *bus.Conn, event string, data any) error
	}
	verbs := []verb{
		{"Broadcast", func(_ context.Context, c *bus.Conn, ev string, d any) error { return c.Broadcast(ev, d) }},
		{"SendToApp", func(_ context.Context, c *bus.Conn, ev string, d any) error { return c.SendToApp(ev, d) }},
		{"SendToAgent", func(ctx context.Context, c *bus.Conn, ev string, d any) error { return c.SendToAgent(ctx, ev, d) }},
		{"SendTo", func(ctx context.Context, c *bus.Conn, ev string, d any) error {
			return c.SendTo(ctx, bus.MasterID, ev, d)
		}},
		{"SendRandom", func(ctx context.Context, c *bus.Conn, ev string, d any) error { return c.SendRandom(ctx, ev, d) }},
		{"Request", func(ctx context.Context, c *bus.Conn, ev string, d any) error {
			_, err := c.Request(ctx, bus.MasterID, ev, d)
			return err
		}},
		{"RequestAgent", func(ctx context.Context, c *bus.Conn, ev string, d any) error {
			_, err := c.RequestAgent(ctx, ev, d)
			return err
		}},
		{"RequestMaster", func(ctx context.Context, c *bus.Conn, ev string, d any) error {
			m, err := c.RequestMaster(ctx, ev, d)
			if err == nil && m.From != bus.MasterID {
				return fmt.Errorf("reply from %q, want the master", m.From)
			}
			return err
		}},
		{"SendToMaster", func(ctx context.Context, c *bus.Conn, ev string, d any) error { return c.SendToMaster(ctx, ev, d) }},
		{"Gather", func(ctx context.Context, c *bus.Conn, ev string, d any) error {
			_, err := c.Gather(ctx, ev, d, 1)
			return err
		}},
	}

	// mayReach says whether s may reach the master's handler of s.Event.
	mayReach := func(s sent) bool {
		if s.Verb != "SendToMaster" && s.Verb != "RequestMaster" {
			return false
		}
		if s.Event == "status" || s.Event == "reload" {
			return s.Role == bus.RoleControl
		}
		return s.Role == bus.RoleAgent || s.Role == bus.RoleWorker
	}
	// wantErr says what the sender of s gets: nil, an error wrapping
	// ErrNoReceiver, or any error.
	const (
		none = iota
		noReceiver
		anyError
	)
	wantErr := func(s sent) int {
		switch {
		case mayReach(s):
			return none
		case s.Verb == "Broadcast" || s.Verb == "SendToApp":
			return none // fire-and-forget
		case s.Role == bus.RoleControl:
			return anyError // the bus refuses all but its two events
		case s.Verb == "SendTo" || s.Verb == "Request":
			return noReceiver
		case s.Verb == "SendToMaster" || s.Verb == "RequestMaster":
			return anyError
		}
		return none // the agent or the worker handles it
	}

	// Every call at once: those that cannot get through take until ctx ends.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	var calls []sent
	for role := range conns {
		for _, v := range verbs {
			for _, ev := range events {
				calls = append(calls, sent{Role: role, Verb: v.name, Event: ev})
			}
		}
	}
	errs := make([]error, len(calls))
	var wg sync.WaitGroup
	for i, s := range calls {
		var call func(ctx context.Context, c *bus.Conn, event string, data any) error
		for _, v := range verbs {
			if v.name == s.Verb {
				call = v.call
			}
		}
		wg.Go(func() { errs[i] = call(ctx, conns[s.Role], s.Event, s) })
	}
	wg.Wait()

	// Everything sent has reached the master's queues once each sender has
	// flushed; closing the master handles all of it.
	for role, c := range conns {
		if err := c.Flush(t.Context()); err != nil {
			t.Fatalf("Flush at the %s: %v", role, err)
		}
	}
	if err := conns[bus.RoleMaster].Close(); err != nil {
		t.Fatalf("Close of the master: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	for i, s := range calls {
		name := fmt.Sprintf("%s(%s) from the %s", s.Verb, s.Event, s.Role)
		switch n, want := reached[s], mayReach(s); {
		case want && n != 1:
			t.Errorf("%s reached the master's handler %d times, want once", name, n)
		case !want && n != 0:
			t.Errorf("%s reached the master's handler of OnMaster %d times, want never", name, n)
		}
		switch err := errs[i]; wantErr(s) {
		case none:
			if err != nil {
				t.Errorf("%s = %v, want nil", name, err)
			}
		case noReceiver:
			if !errors.Is(err, bus.ErrNoReceiver) {
				t.Errorf("%s = %v, want an error wrapping ErrNoReceiver", name, err)
			}
		case anyError:
			if err == nil {
				t.Errorf("%s = nil, want an error", name)
			}
		}
	}
}

// TestOnMasterOnlyAtTheMaster: no other role has the master route.
func TestOnMasterOnlyAtTheMaster(t *testing.T) {
	b := bustest.NewBroker(t)
	for _, role := range []bus.Role{bus.RoleAgent, bus.RoleWorker, bus.RoleControl} {
		c := bustest.Dial(t, b, role, string(role)+"-1")
		err := c.OnMaster("status", func(context.Context, bus.Message) (any, error) { return nil, nil })
		if err == nil {
			t.Errorf("OnMaster(status) at the %s = nil, want an error", role)
		}
	}
}
