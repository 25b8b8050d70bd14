package bus_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/broker"
	"github.com/yolkgo/yolk/bus/bustest"
)

// sniffed is one message on the bus as a sniffer saw it.
type sniffed struct {
	subject string
	kind    byte     // of a compact body (the low bits of its second byte), 0 for a JSON one
	events  []string // a batch's events, or an event's data
}

// subscribeAsMaster subscribes to subject on b with a master's credential
// and plain nats.go, as a bus sniffer.
func subscribeAsMaster(t *testing.T, b *broker.Broker, subject string) *nats.Subscription {
	t.Helper()
	cred := b.Mint(bus.RoleMaster, "sniffer")
	nc, err := nats.Connect(b.ClientURL(), nats.UserInfo(cred.User, cred.Password))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	sub, err := nc.SubscribeSync(subject)
	if err == nil {
		err = sub.SetPendingLimits(-1, -1)
	}
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

// dialWire3 dials b as the process id of role, sending wire version 3.
func dialWire3(t *testing.T, b *broker.Broker, role bus.Role, id string) *bus.Conn {
	t.Helper()
	c := bustest.Dial(t, b, role, id)
	if err := c.SetWire(bus.WireVersion); err != nil {
		t.Fatal(err)
	}
	return c
}

// handled registers a handler of event on c that passes each message's
// Data on, as a string.
func handled(t *testing.T, c *bus.Conn, event string) <-chan string {
	t.Helper()
	got := make(chan string, 1000)
	if err := c.On(event, func(_ context.Context, m bus.Message) (any, error) { got <- string(m.Data); return nil, nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

// expect reads len(want) messages from got and checks they are want, in order.
func expect(t *testing.T, got <-chan string, want []string, what string) {
	t.Helper()
	timeout := time.After(wait)
	for i, w := range want {
		select {
		case g := <-got:
			if g != w {
				t.Fatalf("%s: message %d is %.40q (%d bytes), want %.40q (%d bytes)", what, i, g, len(g), w, len(w))
			}
		case <-timeout:
			t.Fatalf("%s: %d of %d messages handled", what, i, len(want))
		}
	}
}

// jsonString is a JSON string of n bytes in all.
func jsonString(n int) string { return `"` + strings.Repeat("x", n-2) + `"` }

// sniffer subscribes to every yolk subject but the inboxes, with a master's
// credential, and returns what it has seen once n messages came.
func sniffer(t *testing.T, b *broker.Broker) func(n int) []sniffed {
	t.Helper()
	sub := subscribeAsMaster(t, b, "yolk.>")
	return func(n int) []sniffed {
		t.Helper()
		var out []sniffed
		for len(out) < n {
			m, err := sub.NextMsg(wait)
			if err != nil {
				t.Fatalf("sniffed %d messages, then: %v (so far: %v)", len(out), err, out)
			}
			if strings.HasPrefix(m.Subject, "yolk.inbox.") {
				continue
			}
			out = append(out, parseSniffed(t, m))
		}
		return out
	}
}

func parseSniffed(t *testing.T, m *nats.Msg) sniffed {
	s := sniffed{subject: m.Subject}
	if len(m.Data) < 2 || m.Data[0] != 2 {
		return s
	}
	s.kind = m.Data[1] & 0x0f
	rest := m.Data[2:]
	if s.kind != 6 { // not a batch
		s.events = []string{string(rest)}
		return s
	}
	for len(rest) > 0 {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			t.Fatalf("a batch on %s cut short: %q", m.Subject, m.Data)
		}
		s.events = append(s.events, string(rest[k:k+int(n)]))
		rest = rest[k+int(n):]
	}
	return s
}

// TestBatchOrder: while a burst is under way, events to one subject share a
// batch, and any other publish (a send, another subject), Flush and Close
// send the pending batch first, so the wire and the receiver see everything
// in the order it was sent.
func TestBatchOrder(t *testing.T) {
	b := bustest.NewBroker(t)
	sniff := sniffer(t, b)
	w, a := dialWire3(t, b, bus.RoleWorker, "w1"), dialWire3(t, b, bus.RoleAgent, "a1")
	got := handled(t, w, "ev")
	handled(t, w, "pt")
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()

	release := bus.HoldBatch(a)
	sendApp := func(from, to int) {
		for i := from; i < to; i++ {
			if err := a.SendToApp("ev", i); err != nil {
				t.Fatal(err)
			}
		}
	}
	sendApp(0, 5)
	if err := a.SendTo(ctx, "w1", "pt", "x"); err != nil {
		t.Fatal(err)
	}
	sendApp(5, 8)
	if err := a.Broadcast("bc", true); err != nil {
		t.Fatal(err)
	}
	sendApp(8, 10)
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	sendApp(10, 11)
	release()

	const batch, send, event = 6, 2, 1
	want := []sniffed{
		{"yolk.app.ev.a1", batch, []string{"0", "1", "2", "3", "4"}},
		{"yolk.to.w1.pt.a1", send, []string{`"x"`}},
		{"yolk.app.ev.a1", batch, []string{"5", "6", "7"}},
		{"yolk.all.bc.a1", batch, []string{"true"}},
		{"yolk.app.ev.a1", batch, []string{"8", "9"}},
		{"yolk.app.ev.a1", batch, []string{"10"}}, // sent by the flusher, once woken
	}
	if seen := sniff(len(want)); fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("on the wire:\n%v\nwant\n%v", seen, want)
	}
	// after the flusher ran, the first event of a burst goes at once, alone
	if err := a.SendToApp("ev", 11); err != nil {
		t.Fatal(err)
	}
	if seen := sniff(1); fmt.Sprint(seen) != fmt.Sprint([]sniffed{{"yolk.app.ev.a1", event, []string{"11"}}}) {
		t.Errorf("the first event of a new burst: %v, want it alone, as an event", seen)
	}
	// the events of one route (the send and the broadcast have their own)
	expect(t, got, strings.Fields("0 1 2 3 4 5 6 7 8 9 10 11"), "the worker's events")
}

// TestBatchLimits: an event too large for a batch goes alone, a batch never
// grows past its bound, and data refused at the send leaves the batch as it
// was.
func TestBatchLimits(t *testing.T) {
	b := bustest.NewBroker(t)
	sniff := sniffer(t, b)
	w, a := dialWire3(t, b, bus.RoleWorker, "w1"), dialWire3(t, b, bus.RoleAgent, "a1")
	got := handled(t, w, "ev")
	defer bus.HoldBatch(a)()

	sent := []string{jsonString(10), jsonString(bus.MaxBatchItem + 1), jsonString(20)}
	for range 3 * bus.MaxBatch / 4096 {
		sent = append(sent, jsonString(4096))
	}
	for i, data := range sent {
		if err := a.SendToApp("ev", json.RawMessage(data)); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := a.SendToApp("ev", json.RawMessage(`{"a":`)); !errors.Is(err, bus.ErrBadData) {
				t.Fatalf("SendToApp of bad JSON = %v, want ErrBadData", err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	seen := sniff(6)
	if seen[0].kind != 6 || len(seen[0].events) != 1 || len(seen[0].events[0]) != 10 {
		t.Errorf("first on the wire: a %d-event message of kind %d, want the batch of the 10-byte event alone", len(seen[0].events), seen[0].kind)
	}
	if seen[1].kind != 1 || len(seen[1].events[0]) != bus.MaxBatchItem+1 {
		t.Errorf("second on the wire: kind %d, want the large event alone (kind 1)", seen[1].kind)
	}
	events := 0
	for _, s := range seen[2:] {
		events += len(s.events)
		size := 2
		for _, e := range s.events {
			size += len(binary.AppendUvarint(nil, uint64(len(e)))) + len(e)
		}
		if size > bus.MaxBatch || s.kind != 6 {
			t.Errorf("a message of kind %d, %d events in %d bytes: want a batch within %d bytes", s.kind, len(s.events), size, bus.MaxBatch)
		}
	}
	if want := len(sent) - 2; events != want {
		t.Errorf("the batches after the large event hold %d events, want %d", events, want)
	}
	expect(t, got, sent, "the worker's events")
}

// TestBatchWithinPayloadLimit: on a bus whose payload limit is below a
// batch's usual bound, a burst of events that each fit is delivered whole.
func TestBatchWithinPayloadLimit(t *testing.T) {
	const limit = 16 << 10
	b := bustest.NewBrokerWith(t, broker.Config{MaxPayload: limit})
	w, a := dialWire3(t, b, bus.RoleWorker, "w1"), dialWire3(t, b, bus.RoleAgent, "a1")
	got := handled(t, w, "ev")
	defer bus.HoldBatch(a)()
	var sent []string
	for _, n := range []int{limit / 3, limit / 3, limit / 3, limit / 5, limit / 5, limit / 5, limit / 5, limit / 5, limit - 64} {
		sent = append(sent, jsonString(n))
		if err := a.SendToApp("ev", json.RawMessage(sent[len(sent)-1])); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	expect(t, got, sent, "events near the payload limit")
}

// TestBatchBurst: a burst of events through the real flusher reaches every
// worker whole and in order, in fewer NATS messages than events.
func TestBatchBurst(t *testing.T) {
	b := bustest.NewBroker(t)
	counted := subscribeAsMaster(t, b, "yolk.app.ev.a1")
	a := dialWire3(t, b, bus.RoleAgent, "a1")
	const n = 20000
	var want []string
	for i := range n {
		want = append(want, strconv.Itoa(i))
	}
	got := []<-chan string{
		handled(t, dialWire3(t, b, bus.RoleWorker, "w1"), "ev"),
		handled(t, dialWire3(t, b, bus.RoleWorker, "w2"), "ev"),
	}
	for i := range n {
		if err := a.SendToApp("ev", i); err != nil {
			t.Fatal(err)
		}
	}
	for i, g := range got {
		expect(t, g, want, fmt.Sprintf("worker %d", i+1))
	}
	msgs, _, err := counted.Pending()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d events in %d NATS messages", n, msgs)
	if msgs >= n || msgs == 0 {
		t.Errorf("%d events went as %d NATS messages, want fewer (batches)", n, msgs)
	}
}

// TestBatchClose: Close sends the pending batch, and an event sent after
// Close fails with ErrClosed, in a burst or not.
func TestBatchClose(t *testing.T) {
	b := bustest.NewBroker(t)
	w, a := dialWire3(t, b, bus.RoleWorker, "w1"), dialWire3(t, b, bus.RoleAgent, "a1")
	got := handled(t, w, "ev")
	bus.HoldBatch(a)
	for i := range 3 {
		if err := a.SendToApp("ev", i); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	expect(t, got, []string{"0", "1", "2"}, "the batch pending at Close")
	if err := a.SendToApp("ev", 9); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("SendToApp within a burst after Close = %v, want ErrClosed", err)
	}
	a2 := dialWire3(t, b, bus.RoleAgent, "a2")
	if err := a2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a2.SendToApp("ev", 9); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("SendToApp after Close = %v, want ErrClosed", err)
	}
}

// reentrant is data whose encoding sends an event on the same Conn.
type reentrant struct{ c *bus.Conn }

func (r reentrant) MarshalJSON() ([]byte, error) {
	return []byte(`"outer"`), r.c.SendToApp("ev", "inner")
}

// TestBatchReentrantEncoding: data whose MarshalJSON sends on the same Conn
// does not deadlock it, in a burst or not, and its event comes first.
func TestBatchReentrantEncoding(t *testing.T) {
	b := bustest.NewBroker(t)
	w, a := dialWire3(t, b, bus.RoleWorker, "w1"), dialWire3(t, b, bus.RoleAgent, "a1")
	got := handled(t, w, "ev")
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	for _, held := range []bool{false, true} {
		if held {
			defer bus.HoldBatch(a)()
		}
		sent := make(chan error, 1)
		go func() { sent <- a.SendToApp("ev", reentrant{a}) }()
		select {
		case err := <-sent:
			if err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatalf("held %v: SendToApp of data whose encoding sends did not return", held)
		}
		if err := a.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		expect(t, got, []string{`"inner"`, `"outer"`}, fmt.Sprintf("held %v", held))
	}
}

// TestBatchHandlerAppends: a handler that appends to its event's Data (it
// owns it) changes neither the events after it in the batch nor the batch's
// framing.
func TestBatchHandlerAppends(t *testing.T) {
	b := bustest.NewBroker(t)
	w, a := dialWire3(t, b, bus.RoleWorker, "w1"), dialWire3(t, b, bus.RoleAgent, "a1")
	got := make(chan string, 10)
	err := w.On("ev", func(_ context.Context, m bus.Message) (any, error) {
		got <- string(append(m.Data, "\n!!!!!!!!!!"...))
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.HoldBatch(a)()
	var want []string
	for _, s := range []string{"aaaa", "bbbb", "cccc"} {
		if err := a.SendToApp("ev", s); err != nil {
			t.Fatal(err)
		}
		want = append(want, `"`+s+`"`+"\n!!!!!!!!!!")
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	expect(t, got, want, "events whose handler appends to them")
}

// TestBatchBeforeRepliesAndGathers: the events a handler sends go out before
// its reply, and the events sent before a Gather before its request.
func TestBatchBeforeRepliesAndGathers(t *testing.T) {
	b := bustest.NewBroker(t)
	sniff := subscribeAsMaster(t, b, "yolk.>")
	w, a := dialWire3(t, b, bus.RoleWorker, "w1"), dialWire3(t, b, bus.RoleAgent, "a1")
	defer bus.HoldBatch(w)()
	defer bus.HoldBatch(a)()
	err := w.On("q", func(context.Context, bus.Message) (any, error) {
		for i := range 3 {
			if err := w.Broadcast("note", i); err != nil {
				return nil, err
			}
		}
		return "answer", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if _, err := a.Request(ctx, "w1", "q", nil); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := a.SendToApp("ev", i); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Gather(ctx, "q", nil, 1); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"yolk.to.w1.q.a1",
		"yolk.all.note.w1 (batch)", "reply to a1",
		"yolk.app.ev.a1 (batch)", "yolk.app.q.a1",
		"yolk.all.note.w1 (batch)", "reply to a1",
	}
	var seen []string
	for len(seen) < len(want) {
		m, err := sniff.NextMsg(wait)
		if err != nil {
			t.Fatalf("sniffed %v, then: %v", seen, err)
		}
		s := m.Subject
		if strings.HasPrefix(s, "yolk.inbox.a1.") {
			s = "reply to a1"
		}
		if len(m.Data) > 1 && m.Data[0] == 2 && m.Data[1]&0x0f == 6 {
			s += " (batch)"
		}
		seen = append(seen, s)
	}
	if !slices.Equal(seen, want) {
		t.Errorf("on the wire:\n%v\nwant\n%v", seen, want)
	}
}
