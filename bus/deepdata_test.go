package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/bustest"
)

// maxNesting is the decoder's limit on nested arrays and objects.
const maxNesting = 1000

// nestedArrays returns depth arrays, one in another, around 1.
func nestedArrays(depth int) any {
	var v any = 1
	for range depth {
		v = []any{v}
	}
	return v
}

// TestDeepDataRefusedAtSend: data nested deeper than every receiver accepts
// fails at the sender with ErrBadData, for every verb and for a reply,
// instead of being dropped by the receivers (a request would wait for its
// deadline). Data at the limit goes through.
func TestDeepDataRefusedAtSend(t *testing.T) {
	b := bustest.NewBroker(t)
	agent := bustest.Dial(t, b, bus.RoleAgent, agentID)
	w1 := bustest.Dial(t, b, bus.RoleWorker, "w1")
	got := make(chan bus.Message, 100)
	handlers := map[string]bus.Handler{
		"ev":   func(_ context.Context, m bus.Message) (any, error) { got <- m; return "ok", nil },
		"deep": func(context.Context, bus.Message) (any, error) { return nestedArrays(maxNesting + 1), nil },
	}
	for ev, h := range handlers {
		for _, c := range []*bus.Conn{agent, w1} {
			if err := c.On(ev, h); err != nil {
				t.Fatal(err)
			}
		}
	}

	// A request that reached the receiver but got no answer would wait this
	// long; a refusal at the sender is at once.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	deep := nestedArrays(maxNesting + 1)
	calls := []struct {
		name string
		call func() error
	}{
		{"Broadcast", func() error { return w1.Broadcast("ev", deep) }},
		{"SendToApp", func() error { return agent.SendToApp("ev", deep) }},
		{"SendToAgent", func() error { return w1.SendToAgent(ctx, "ev", deep) }},
		{"SendTo", func() error { return agent.SendTo(ctx, "w1", "ev", deep) }},
		{"SendRandom", func() error { return agent.SendRandom(ctx, "ev", deep) }},
		{"Request", func() error { _, err := agent.Request(ctx, "w1", "ev", deep); return err }},
		{"RequestAgent", func() error { _, err := w1.RequestAgent(ctx, "ev", deep); return err }},
		{"Gather", func() error { _, err := agent.Gather(ctx, "ev", deep, 1); return err }},
		{"Broadcast of raw JSON", func() error {
			return w1.Broadcast("ev", json.RawMessage(strings.Repeat("[", maxNesting+1)+strings.Repeat("]", maxNesting+1)))
		}},
	}
	for _, tt := range calls {
		if err := tt.call(); !errors.Is(err, bus.ErrBadData) || !strings.HasPrefix(err.Error(), "bus: ") {
			t.Errorf("%s of data nested %d deep = %v, want an error wrapping ErrBadData, prefixed bus:", tt.name, maxNesting+1, err)
		}
	}

	rctx, rcancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer rcancel()
	_, err := agent.Request(rctx, "w1", "deep", nil)
	var re *bus.RemoteError
	if !errors.As(err, &re) || re.From != "w1" || !strings.Contains(re.Message, "nested deeper than 1000") {
		t.Errorf("Request(w1, deep) whose reply is nested %d deep = %v, want a RemoteError from w1 saying so", maxNesting+1, err)
	}

	// At the limit: it arrives, and is the first thing w1 handles (the
	// refused broadcasts were never sent).
	if err := agent.SendToApp("ev", nestedArrays(maxNesting)); err != nil {
		t.Fatalf("SendToApp of data nested %d deep = %v", maxNesting, err)
	}
	select {
	case m := <-got:
		var v any
		if m.From != agentID || m.Decode(&v) != nil || !strings.HasPrefix(string(m.Data), strings.Repeat("[", maxNesting)+"1") {
			t.Errorf("w1 handled %s from %s first, want the agent's data nested %d deep", m.Data, m.From, maxNesting)
		}
	case <-time.After(wait):
		t.Fatal("data nested at the limit did not arrive")
	}
}
