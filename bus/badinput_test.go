package bus_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/broker"
	"github.com/yolkgo/yolk/bus/bustest"
)

// maxPayload is the broker's default payload limit (nats's 1 MiB).
const maxPayload = 1 << 20

// envelopeOf is a well-formed envelope of kind for event from a1, the agent
// that publishes every message of these tests, with data as given.
func envelopeOf(kind, event, data string) string {
	ev, _ := json.Marshal(event)
	return `{"v":1,"kind":"` + kind + `","event":` + string(ev) + `,"from":"a1","role":"agent","data":` + data + `}`
}

// dropped matches the receiver's record of a message it dropped: a warning
// whose message starts with want and that names the subject.
func dropped(subject, want string) func(bustest.Record) bool {
	return func(r bustest.Record) bool {
		return r.Level >= slog.LevelWarn && strings.HasPrefix(r.Message, want) && r.Attrs["subject"] == subject
	}
}

// TestBadMessagesDropped publishes, with the agent's credential (which may
// publish there), messages that no bus.Conn would send: each is dropped and
// logged by the receiving worker, which handles nothing but the good message
// that follows, and answers no request it dropped.
func TestBadMessagesDropped(t *testing.T) {
	b := bustest.NewBroker(t)
	log, rec := bustest.NewRecorder(t)
	cred := b.Mint(bus.RoleWorker, "w1")
	w1, err := bus.Dial(t.Context(), bus.Options{
		URL: b.ClientURL(), User: cred.User, Password: cred.Password, ID: "w1", Role: bus.RoleWorker, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w1.Close()
	got := make(chan bus.Message, 100)
	if err := w1.On("ev", func(_ context.Context, m bus.Message) (any, error) { got <- m; return nil, nil }); err != nil {
		t.Fatal(err)
	}

	agent := b.Mint(bus.RoleAgent, "a1")
	nc, err := nats.Connect(b.ClientURL(), nats.UserInfo(agent.User, agent.Password), nats.Name("a1"),
		nats.CustomInboxPrefix(bus.InboxPrefix("a1")))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	replies, err := nc.SubscribeSync(bus.InboxPrefix("a1") + ".replies")
	if err != nil {
		t.Fatal(err)
	}

	garbage := make([]byte, 4096)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range garbage {
		garbage[i] = byte(rnd.UintN(256))
	}
	garbage[0] = 0xff // never a '{'
	nearMax := maxPayload - 4096
	const (
		app = "yolk.app.ev.a1"
		to  = "yolk.to.w1.ev.a1"
	)
	tests := []struct {
		name      string
		subject   string
		withReply bool // a point-to-point send or request carries a reply subject
		payload   string
		logged    string // the start of the receiver's log message
		err       string // in its err attribute, if not ""
	}{
		{"truncated", app, false, envelopeOf("event", "ev", `{"N":1}`)[:40], "bus: drop message", "unexpected end"},
		{"not an object", app, false, `[1,2,3]`, "bus: drop message", "not a JSON object"},
		{"empty", app, false, ``, "bus: drop message", "not a JSON object"},
		{"data after the object", app, false, envelopeOf("event", "ev", `1`) + `{}`, "bus: drop message", "data after"},
		{"unknown version", app, false, strings.Replace(envelopeOf("event", "ev", `1`), `"v":1`, `"v":2`, 1), "bus: drop message", "unsupported version 2"},
		{"version as a string", app, false, strings.Replace(envelopeOf("event", "ev", `1`), `"v":1`, `"v":"1"`, 1), "bus: drop message", "unsupported version"},
		{"no version", app, false, strings.Replace(envelopeOf("event", "ev", `1`), `"v":1,`, ``, 1), "bus: drop message", "missing v"},
		{"duplicate from", app, false, strings.Replace(envelopeOf("event", "ev", `1`), `"from":"a1"`, `"from":"a1","from":"a1"`, 1), "bus: drop message", "duplicate key"},
		{"unknown kind", app, false, envelopeOf("shout", "ev", `1`), "bus: drop message", "unknown kind"},
		{"unknown role", app, false, strings.Replace(envelopeOf("event", "ev", `1`), `"agent"`, `"root"`, 1), "bus: drop message", "unknown role"},
		{"invalid UTF-8", app, false, "{\"v\":1,\"kind\":\"event\",\"event\":\"e\xffv\",\"from\":\"a1\",\"role\":\"agent\"}", "bus: drop message", "not valid UTF-8"},
		{"binary garbage", app, false, string(garbage), "bus: drop message", "not a JSON object"},
		{"garbage in an object", app, false, "{" + string(garbage[1:]), "bus: drop message", "invalid character"},
		{"too deep", app, false, envelopeOf("event", "ev", strings.Repeat("[", 2000)+strings.Repeat("]", 2000)), "bus: drop message", "nested deeper"},
		{"huge and bad", app, false, envelopeOf("event", "ev", `"`+strings.Repeat("x", nearMax)), "bus: drop message", "unexpected end"},
		{"another sender", app, false, strings.Replace(envelopeOf("event", "ev", `1`), `"from":"a1"`, `"from":"w9"`, 1), "bus: drop message: envelope does not match its subject", ""},
		{"another event", app, false, envelopeOf("event", "other", `1`), "bus: drop message: envelope does not match its subject", ""},
		{"a send on a fan-out route", app, false, envelopeOf("send", "ev", `1`), "bus: drop message: unexpected kind", ""},
		{"a reply on a fan-out route", app, false, envelopeOf("reply", "ev", `1`), "bus: drop message: unexpected kind", ""},
		{"a nack on a fan-out route", app, false, envelopeOf("nack", "ev", `1`), "bus: drop message: unexpected kind", ""},
		{"an event on a point-to-point route", to, true, envelopeOf("event", "ev", `1`), "bus: drop message: unexpected kind", ""},
		{"a send without a reply subject", to, false, envelopeOf("send", "ev", `1`), "bus: drop message: unexpected kind", ""},
		{"a bad send", to, true, envelopeOf("send", "ev", `{`), "bus: drop message", "unexpected end"},
		{"a bad request", to, true, strings.Replace(envelopeOf("req", "ev", `1`), `"v":1`, `"v":3`, 1), "bus: drop message", "unsupported version"},
		{"event name with a quote", `yolk.app.a"b.a1`, false, envelopeOf("event", `a"b`, `1`), "bus: drop message: bad event name", ""},
		{"event name with a control character", "yolk.app.a\x01b.a1", false, envelopeOf("event", "a\x01b", `1`), "bus: drop message: bad event name", ""},
		{"event name with a no-break space", "yolk.app.a\u00a0b.a1", false, envelopeOf("event", "a\u00a0b", `1`), "bus: drop message: bad event name", ""},
		{"event name not UTF-8", "yolk.app.\xff.a1", false, envelopeOf("event", "x", `1`), "bus: drop message: bad event name", ""},
		{"event name too long", "yolk.app." + strings.Repeat("e", 65) + ".a1", false, envelopeOf("event", strings.Repeat("e", 65), `1`), "bus: drop message: bad event name", ""},
		{"a request with a bad event name", `yolk.to.w1.e\v.a1`, true, envelopeOf("req", `e\v`, `1`), "bus: drop message: bad event name", ""},
		// wire version 2, the compact body (compact.go)
		{"compact: only the format", app, false, "\x02", "bus: drop message", "too short"},
		{"compact: unknown kind", app, false, "\x02\x29" + `1`, "bus: drop message", "unknown kind 9"},
		{"compact: no kind", app, false, "\x02\x20" + `1`, "bus: drop message", "unknown kind 0"},
		{"compact: unknown role", app, false, "\x02\x71" + `1`, "bus: drop message", "unknown role 7"},
		{"compact: no role", app, false, "\x02\x01" + `1`, "bus: drop message", "unknown role 0"},
		{"compact: no data", app, false, "\x02\x21", "bus: drop message", "no data"},
		{"compact: a reply on a fan-out route", app, false, "\x02\x24\x02w1\x00" + `1`, "bus: drop message: unexpected kind", ""},
		{"compact: a reply cut in its sender", app, false, "\x02\x24\x09w1", "bus: drop message", "cut short"},
		{"compact: a reply cut in its error", app, false, "\x02\x24\x02w1\x05ab", "bus: drop message", "cut short"},
		{"compact: a reply from a bad id", app, false, "\x02\x24\x03w.1\x00" + `1`, "bus: drop message", "contains '.'"},
		{"compact: a send on a fan-out route", app, false, "\x02\x22" + `1`, "bus: drop message: unexpected kind", ""},
		{"compact: an event on a point-to-point route", to, true, "\x02\x21" + `1`, "bus: drop message: unexpected kind", ""},
		{"compact: a send without a reply subject", to, false, "\x02\x22" + `1`, "bus: drop message: unexpected kind", ""},
		// wire version 3, batches of events (batch.go)
		{"batch: empty", app, false, "\x02\x26", "bus: drop message", "no data"},
		{"batch: an event cut short", app, false, "\x02\x26\x01" + `1` + "\x05" + `"ab`, "bus: drop message", "event 2 of a batch is cut short"},
		{"batch: an event of no bytes", app, false, "\x02\x26\x01" + `1` + "\x00", "bus: drop message", "event 2 of a batch is cut short"},
		{"batch: a length past the end", app, false, "\x02\x26\xff\xff\xff\xff\x0f" + `1`, "bus: drop message", "event 1 of a batch is cut short"},
		{"batch: a length that is not a uvarint", app, false, "\x02\x26\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "bus: drop message", "event 1 of a batch is cut short"},
		{"batch: on a point-to-point route", to, true, "\x02\x26\x01" + `1`, "bus: drop message: unexpected kind", ""},
	}
	for _, tt := range tests {
		msg := &nats.Msg{Subject: tt.subject, Data: []byte(tt.payload)}
		if tt.withReply {
			msg.Reply = replies.Subject
		}
		if err := nc.PublishMsg(msg); err != nil {
			t.Fatalf("%s: publish: %v", tt.name, err)
		}
		r := rec.WaitFor(t, wait, fmt.Sprintf("of %s dropping %s", tt.logged, tt.name), dropped(tt.subject, tt.logged))
		if !strings.Contains(r.Attrs["err"], tt.err) {
			t.Errorf("%s: logged %s, want an err with %q", tt.name, r, tt.err)
		}
	}
	if err := nc.LastError(); err != nil {
		t.Fatalf("the agent's connection: %v", err)
	}

	// a good message near the payload limit is handled, and a good send is acknowledged
	big := strings.Repeat("y", nearMax)
	if err := nc.Publish(app, []byte(envelopeOf("event", "ev", `"`+big+`"`))); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		var s string
		if err := m.Decode(&s); err != nil || s != big || m.From != "a1" || m.Role != bus.RoleAgent {
			t.Fatalf("handled %s from %s (%s), %d bytes (%v); want the good message of %d bytes from a1", m.Event, m.From, m.Role, len(s), err, len(big))
		}
	case <-time.After(wait):
		t.Fatal("the good message after the bad ones was not handled")
	}
	// a good batch is handled event by event, in order
	if err := nc.Publish(app, []byte("\x02\x26\x01"+`7`+"\x03"+`"b"`+"\x02"+`[]`)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`7`, `"b"`, `[]`} {
		select {
		case m := <-got:
			if string(m.Data) != want || m.From != "a1" || m.Role != bus.RoleAgent || m.Event != "ev" {
				t.Errorf("handled %s from %s (%s): %s, want ev from a1 (agent): %s", m.Event, m.From, m.Role, m.Data, want)
			}
		case <-time.After(wait):
			t.Fatalf("the good batch's event %s was not handled", want)
		}
	}
	ack, err := nc.Request(to, []byte(envelopeOf("send", "ev", `{"N":2}`)), wait)
	if err != nil {
		t.Fatalf("a good send after the bad ones: %v", err)
	}
	if !strings.Contains(string(ack.Data), `"kind":"reply"`) {
		t.Errorf("a good send after the bad ones was answered %s, want an ack", ack.Data)
	}
	// a good compact send (kind send, role agent) is acknowledged in its format
	ack, err = nc.Request(to, []byte("\x02\x22"+`{"N":3}`), wait)
	if err != nil {
		t.Fatalf("a good compact send after the bad ones: %v", err)
	}
	if want := "\x02\x34\x02w1\x00null"; string(ack.Data) != want { // a reply from worker w1, no error
		t.Errorf("a good compact send was answered %q, want %q", ack.Data, want)
	}
	if n, _, _ := replies.Pending(); n != 0 {
		m, _ := replies.NextMsg(0)
		t.Errorf("%d answers to sends and requests that were dropped, e.g. %s", n, m.Data)
	}
	for _, want := range []string{`{"N":2}`, `{"N":3}`} {
		select {
		case m := <-got: // the good sends
			if string(m.Data) != want || m.From != "a1" || m.Role != bus.RoleAgent || m.Event != "ev" {
				t.Errorf("handled %s from %s (%s): %s, want ev from a1 (agent): %s", m.Event, m.From, m.Role, m.Data, want)
			}
		case <-time.After(wait):
			t.Fatalf("the good send %s was acknowledged but not handled", want)
		}
	}
	if err := w1.Close(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		m := <-got
		t.Errorf("%d more messages handled, e.g. %s from %s: %s", len(got)+1, m.Event, m.From, m.Data)
	}
}

// TestOverMaxPayload speaks the NATS protocol directly with the agent's
// credential, as only a broken or hostile client would, to publish more than
// the payload limit: the broker refuses it and closes that connection, says
// so in its log, and nothing reaches the worker, which keeps working.
func TestOverMaxPayload(t *testing.T) {
	log, rec := bustest.NewRecorder(t)
	b, err := broker.Start(broker.Config{Port: -1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	w1 := bustest.Dial(t, b, bus.RoleWorker, "w1")
	got := make(chan bus.Message, 10)
	if err := w1.On("ev", func(_ context.Context, m bus.Message) (any, error) { got <- m; return nil, nil }); err != nil {
		t.Fatal(err)
	}

	agent := b.Mint(bus.RoleAgent, "a1")
	addr := strings.TrimPrefix(b.ClientURL(), "nats://")
	conn, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(wait))
	r := bufio.NewReader(conn)
	line := func() string {
		t.Helper()
		s, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read from the broker: %v (so far %q)", err, s)
		}
		return strings.TrimSpace(s)
	}
	if info := line(); !strings.HasPrefix(info, "INFO ") || !strings.Contains(info, fmt.Sprintf(`"max_payload":%d`, maxPayload)) {
		t.Fatalf("the broker's greeting %q, want an INFO with max_payload %d", info, maxPayload)
	}
	reply := func() string { // skips the INFO updates the broker may send at any time
		t.Helper()
		l := line()
		for strings.HasPrefix(l, "INFO ") {
			l = line()
		}
		return l
	}
	connect, _ := json.Marshal(map[string]any{
		"user": agent.User, "pass": agent.Password, "name": "a1", "verbose": false, "pedantic": false, "protocol": 1,
	})
	fmt.Fprintf(conn, "CONNECT %s\r\nPING\r\n", connect)
	if l := reply(); l != "PONG" {
		t.Fatalf("after CONNECT the broker said %q, want PONG", l)
	}
	fmt.Fprintf(conn, "PUB yolk.app.ev.a1 %d\r\n", maxPayload+1)
	if l := reply(); !strings.Contains(l, "-ERR") || !strings.Contains(l, "Maximum Payload") {
		t.Fatalf("after a PUB over the limit the broker said %q, want -ERR 'Maximum Payload Violation'", l)
	}
	if _, err := r.ReadString('\n'); err == nil {
		t.Error("the connection that went over the payload limit is still open")
	}
	r2 := rec.WaitFor(t, wait, "of the broker about the payload violation", func(r bustest.Record) bool {
		return r.Level >= slog.LevelError && strings.Contains(r.Message, "maximum payload exceeded")
	})
	if !strings.Contains(r2.Message, `"a1"`) || strings.Contains(r2.String(), agent.Password) {
		t.Errorf("the broker logged %s, want it to name the client a1 and never its secret", r2)
	}

	a1 := bustest.Dial(t, b, bus.RoleAgent, "a1")
	if err := a1.SendToApp("ev", "after"); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		var s string
		if err := m.Decode(&s); err != nil || s != "after" {
			t.Fatalf("first message handled = %s %q (%v), want the good one", m.Event, m.Data, err)
		}
	case <-time.After(wait):
		t.Fatal("the worker handled nothing after the payload violation")
	}
}
