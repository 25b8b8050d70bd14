package bus_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/bustest"
)

// TestMixedWireVersions: a process that sends wire version 1 (of an older
// yolk, say) and one that sends the compact version 2 reach each other both
// ways, and each gets its replies in the version it sent, as a bus sniffer
// sees on the wire.
func TestMixedWireVersions(t *testing.T) {
	b := bustest.NewBroker(t)
	cred := b.Mint(bus.RoleMaster, "sniffer")
	nc, err := nats.Connect(b.ClientURL(), nats.UserInfo(cred.User, cred.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sniff, err := nc.SubscribeSync("yolk.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	old := bustest.Dial(t, b, bus.RoleAgent, "a1") // a new Conn sends version 1
	w := bustest.Dial(t, b, bus.RoleWorker, "w1")
	if err := w.SetWire(2); err != nil {
		t.Fatal(err)
	}
	if got := w.Wire(); got != 2 {
		t.Fatalf("Wire() = %d after SetWire(2)", got)
	}
	for _, v := range []int{0, bus.WireVersion + 1} {
		if err := w.SetWire(v); err == nil {
			t.Errorf("SetWire(%d) = nil, want an error", v)
		}
	}
	echo := func(_ context.Context, m bus.Message) (any, error) {
		return "echo " + string(m.Data) + " from " + m.From, nil
	}
	for _, c := range []*bus.Conn{old, w} {
		if err := c.On("echo", echo); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()

	// the worker (version 2) asks the agent (version 1) and the other way round
	m, err := w.RequestAgent(ctx, "echo", 1)
	if err != nil || string(m.Data) != `"echo 1 from w1"` || m.From != "a1" || m.Event != "echo" || m.Role != bus.RoleAgent {
		t.Fatalf("RequestAgent from a compact sender = %+v, %v", m, err)
	}
	m, err = old.Request(ctx, "w1", "echo", 2)
	if err != nil || string(m.Data) != `"echo 2 from a1"` || m.From != "w1" || m.Event != "echo" || m.Role != bus.RoleWorker {
		t.Fatalf("Request from a JSON sender = %+v, %v", m, err)
	}

	// on the wire: the request of w1 and its reply compact, a1's both JSON
	want := []struct{ subject, first string }{
		{"yolk.agent.echo.w1", "\x02"}, {"yolk.inbox.w1.", "\x02"},
		{"yolk.to.w1.echo.a1", "{"}, {"yolk.inbox.a1.", "{"},
	}
	for _, wt := range want {
		msg, err := sniff.NextMsg(time.Until(time.Now().Add(wait)))
		if err != nil {
			t.Fatalf("sniffing for %s: %v", wt.subject, err)
		}
		if !strings.HasPrefix(msg.Subject, wt.subject) || !strings.HasPrefix(string(msg.Data), wt.first) {
			t.Errorf("on the wire: %s %q, want %s... starting with %q", msg.Subject, msg.Data, wt.subject, wt.first)
		}
	}
}
