package bus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/broker"
	"github.com/yolkgo/yolk/bus/bustest"
)

// wait bounds every wait in these tests.
const wait = 10 * time.Second

const agentID = "agent-1"

var workerIDs = []string{"w1", "w2", "w3"}

type payload struct{ N int }

type delivery struct {
	to string
	m  bus.Message
}

// cluster is a broker with a master, an agent and three workers, each
// recording what it receives, per event.
type cluster struct {
	t     *testing.T
	b     *broker.Broker
	conns map[string]*bus.Conn
	roles map[string]bus.Role
	mu    sync.Mutex
	got   map[string]chan delivery // by event
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{
		t:     t,
		b:     bustest.NewBroker(t),
		conns: make(map[string]*bus.Conn),
		roles: map[string]bus.Role{bus.MasterID: bus.RoleMaster, agentID: bus.RoleAgent},
		got:   make(map[string]chan delivery),
	}
	for _, w := range workerIDs {
		c.roles[w] = bus.RoleWorker
	}
	for id, role := range c.roles {
		c.conns[id] = bustest.Dial(t, c.b, role, id)
		for _, ev := range []string{"ev", "ready", "state", "fence"} {
			c.listen(id, ev)
		}
	}
	return c
}

func (c *cluster) ch(event string) chan delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.got[event] == nil {
		c.got[event] = make(chan delivery, 10000)
	}
	return c.got[event]
}

// listen records event at id, also on the master route at the master; a
// request gets "reply from <id>".
func (c *cluster) listen(id, event string) {
	c.t.Helper()
	ch := c.ch(event)
	h := func(_ context.Context, m bus.Message) (any, error) {
		ch <- delivery{to: id, m: m}
		return "reply from " + id, nil
	}
	if err := c.conns[id].On(event, h); err != nil {
		c.t.Fatalf("On(%q) at %s: %v", event, id, err)
	}
	if c.roles[id] != bus.RoleMaster {
		return
	}
	if err := c.conns[id].OnMaster(event, h); err != nil {
		c.t.Fatalf("OnMaster(%q) at %s: %v", event, id, err)
	}
}

// settle makes sure every message sent so far by from has been handled:
// from broadcasts a fence (the bus keeps one sender's order to each
// receiver), every Conn waits for it, then every Conn is closed, which lets
// the handlers finish. It returns the deliveries of event.
func (c *cluster) settle(from, event string) []delivery {
	c.t.Helper()
	if err := c.conns[from].Broadcast("fence", nil); err != nil {
		c.t.Fatalf("Broadcast(fence) from %s: %v", from, err)
	}
	fenced := c.collect("fence", len(c.conns))
	if len(fenced) != len(c.conns) {
		c.t.Fatalf("fence reached %d of %d processes", len(fenced), len(c.conns))
	}
	for id, conn := range c.conns {
		if err := conn.Close(); err != nil {
			c.t.Errorf("Close at %s: %v", id, err)
		}
	}
	var out []delivery
	for {
		select {
		case d := <-c.ch(event):
			out = append(out, d)
		default:
			return out
		}
	}
}

// collect waits for n deliveries of event, or fails at the deadline.
func (c *cluster) collect(event string, n int) []delivery {
	c.t.Helper()
	var out []delivery
	deadline := time.After(wait)
	for len(out) < n {
		select {
		case d := <-c.ch(event):
			out = append(out, d)
		case <-deadline:
			c.t.Fatalf("got %d deliveries of %q, want %d: %v", len(out), event, n, out)
		}
	}
	return out
}

func receivers(ds []delivery) []string {
	var ids []string
	for _, d := range ds {
		ids = append(ids, d.to)
	}
	sort.Strings(ids)
	return ids
}

func TestVerbs(t *testing.T) {
	all := []string{agentID, bus.MasterID, "w1", "w2", "w3"}
	data := payload{N: 7}
	tests := []struct {
		name   string
		from   string
		event  string // default "ev"
		send   func(ctx context.Context, c *bus.Conn, event string) error
		want   []string // each receives the event once
		oneOf  []string // exactly one of them receives it once
		replyN int      // replies wanted from a request or a gather
	}{
		{name: "Broadcast from a worker", from: "w1", want: all,
			send: func(_ context.Context, c *bus.Conn, ev string) error { return c.Broadcast(ev, data) }},
		{name: "Broadcast from the agent", from: agentID, want: all,
			send: func(_ context.Context, c *bus.Conn, ev string) error { return c.Broadcast(ev, data) }},
		{name: "Broadcast from the master", from: bus.MasterID, want: all,
			send: func(_ context.Context, c *bus.Conn, ev string) error { return c.Broadcast(ev, data) }},
		{name: "SendToApp from the agent", from: agentID, want: workerIDs,
			send: func(_ context.Context, c *bus.Conn, ev string) error { return c.SendToApp(ev, data) }},
		{name: "SendToApp from a worker", from: "w2", want: workerIDs,
			send: func(_ context.Context, c *bus.Conn, ev string) error { return c.SendToApp(ev, data) }},
		{name: "SendToApp from the master", from: bus.MasterID, want: workerIDs,
			send: func(_ context.Context, c *bus.Conn, ev string) error { return c.SendToApp(ev, data) }},
		{name: "SendToAgent from a worker", from: "w1", want: []string{agentID},
			send: func(ctx context.Context, c *bus.Conn, ev string) error { return c.SendToAgent(ctx, ev, data) }},
		{name: "SendToAgent from the master", from: bus.MasterID, want: []string{agentID},
			send: func(ctx context.Context, c *bus.Conn, ev string) error { return c.SendToAgent(ctx, ev, data) }},
		{name: "SendTo a worker from the agent", from: agentID, want: []string{"w2"},
			send: func(ctx context.Context, c *bus.Conn, ev string) error { return c.SendTo(ctx, "w2", ev, data) }},
		{name: "SendTo a worker from a worker", from: "w3", want: []string{"w1"},
			send: func(ctx context.Context, c *bus.Conn, ev string) error { return c.SendTo(ctx, "w1", ev, data) }},
		{name: "SendTo the agent by id", from: "w1", want: []string{agentID},
			send: func(ctx context.Context, c *bus.Conn, ev string) error { return c.SendTo(ctx, agentID, ev, data) }},
		{name: "SendTo the master by id", from: "w1", want: []string{bus.MasterID},
			send: func(ctx context.Context, c *bus.Conn, ev string) error { return c.SendTo(ctx, bus.MasterID, ev, data) }},
		{name: "SendTo itself", from: "w1", want: []string{"w1"},
			send: func(ctx context.Context, c *bus.Conn, ev string) error { return c.SendTo(ctx, "w1", ev, data) }},
		{name: "SendToMaster ready from a worker", from: "w2", event: "ready", want: []string{bus.MasterID},
			send: func(ctx context.Context, c *bus.Conn, ev string) error { return c.SendToMaster(ctx, ev, data) }},
		{name: "SendToMaster state from the agent", from: agentID, event: "state", want: []string{bus.MasterID},
			send: func(ctx context.Context, c *bus.Conn, ev string) error { return c.SendToMaster(ctx, ev, data) }},
		{name: "SendRandom from the agent", from: agentID, oneOf: workerIDs,
			send: func(ctx context.Context, c *bus.Conn, ev string) error { return c.SendRandom(ctx, ev, data) }},
		{name: "SendRandom from a worker", from: "w3", oneOf: workerIDs,
			send: func(ctx context.Context, c *bus.Conn, ev string) error { return c.SendRandom(ctx, ev, data) }},
		{name: "Request a worker from the agent", from: agentID, want: []string{"w2"}, replyN: 1,
			send: func(ctx context.Context, c *bus.Conn, ev string) error {
				m, err := c.Request(ctx, "w2", ev, data)
				return checkReplies(err, []bus.Message{m}, []string{"w2"})
			}},
		{name: "Request the agent from the master", from: bus.MasterID, want: []string{agentID}, replyN: 1,
			send: func(ctx context.Context, c *bus.Conn, ev string) error {
				m, err := c.Request(ctx, agentID, ev, data)
				return checkReplies(err, []bus.Message{m}, []string{agentID})
			}},
		{name: "RequestMaster state from a worker", from: "w1", event: "state", want: []string{bus.MasterID}, replyN: 1,
			send: func(ctx context.Context, c *bus.Conn, ev string) error {
				m, err := c.RequestMaster(ctx, ev, data)
				return checkReplies(err, []bus.Message{m}, []string{bus.MasterID})
			}},
		{name: "Gather from the master", from: bus.MasterID, want: workerIDs, replyN: 3,
			send: func(ctx context.Context, c *bus.Conn, ev string) error {
				ms, err := c.Gather(ctx, ev, data, 3)
				return checkReplies(err, ms, workerIDs)
			}},
		{name: "Gather from the agent until the deadline", from: agentID, want: workerIDs, replyN: 3,
			send: func(ctx context.Context, c *bus.Conn, ev string) error {
				ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				defer cancel()
				ms, err := c.Gather(ctx, ev, data, 0)
				return checkReplies(err, ms, workerIDs)
			}},
	}
	for _, wire := range []int{1, 2, bus.WireVersion} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("wire %d/%s", wire, tt.name), func(t *testing.T) {
				testVerb(t, wire, tt.from, tt.event, tt.send, tt.want, tt.oneOf, data)
			})
		}
	}
}

// testVerb is one case of TestVerbs, every process sending in wire version
// wire: send, as from, delivers event with data to each of want once, or to
// exactly one of oneOf.
func testVerb(t *testing.T, wire int, from, event string, send func(context.Context, *bus.Conn, string) error, want, oneOf []string, data payload) {
	c := newCluster(t)
	for id, conn := range c.conns {
		if err := conn.SetWire(wire); err != nil {
			t.Fatalf("SetWire(%d) at %s: %v", wire, id, err)
		}
	}
	if event == "" {
		event = "ev"
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if err := send(ctx, c.conns[from], event); err != nil {
		t.Fatal(err)
	}
	got := c.settle(from, event)
	if oneOf != nil {
		if len(got) != 1 || !slices.Contains(oneOf, got[0].to) {
			t.Fatalf("delivered to %v, want exactly one of %v", receivers(got), oneOf)
		}
	} else if ids, want := receivers(got), slices.Sorted(slices.Values(want)); !slices.Equal(ids, want) {
		t.Fatalf("delivered to %v, want %v", ids, want)
	}
	for _, d := range got {
		var p payload
		if err := d.m.Decode(&p); err != nil || p != data {
			t.Errorf("Decode at %s = %+v, %v, want %+v", d.to, p, err, data)
		}
		if d.m.Event != event || d.m.From != from || d.m.Role != c.roles[from] {
			t.Errorf("message at %s = {Event %q From %q Role %q}, want {%q %q %q}",
				d.to, d.m.Event, d.m.From, d.m.Role, event, from, c.roles[from])
		}
	}
}

// checkReplies checks that a request or gather got "reply from <id>" from each of ids.
func checkReplies(err error, ms []bus.Message, ids []string) error {
	if err != nil {
		return err
	}
	var from []string
	for _, m := range ms {
		var s string
		if err := m.Decode(&s); err != nil {
			return err
		}
		if s != "reply from "+m.From || m.Err != nil {
			return errors.New("bad reply " + s + " from " + m.From)
		}
		from = append(from, m.From)
	}
	sort.Strings(from)
	if !slices.Equal(from, ids) {
		return errors.New("replies from " + strings.Join(from, ",") + ", want " + strings.Join(ids, ","))
	}
	return nil
}

func TestSendRandomSpreadsOnce(t *testing.T) {
	const n = 300
	b := bustest.NewBroker(t)
	agent := bustest.Dial(t, b, bus.RoleAgent, agentID)
	var mu sync.Mutex
	seen := make(map[int][]string) // payload -> workers that got it
	total := make(chan struct{}, n*2)
	var ws []*bus.Conn
	for _, id := range workerIDs {
		w := bustest.Dial(t, b, bus.RoleWorker, id)
		ws = append(ws, w)
		err := w.On("job", func(_ context.Context, m bus.Message) (any, error) {
			var p payload
			if err := m.Decode(&p); err != nil {
				return nil, err
			}
			mu.Lock()
			seen[p.N] = append(seen[p.N], id)
			mu.Unlock()
			total <- struct{}{}
			return nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	for i := range n {
		if err := agent.SendRandom(ctx, "job", payload{N: i}); err != nil {
			t.Fatalf("SendRandom(job %d): %v", i, err)
		}
	}
	for i := range n {
		select {
		case <-total:
		case <-ctx.Done():
			t.Fatalf("%d of %d jobs handled", i, n)
		}
	}
	for _, w := range ws {
		if err := w.Close(); err != nil { // drains: any duplicate would be handled by now
			t.Fatal(err)
		}
	}
	perWorker := make(map[string]int)
	for i := range n {
		if len(seen[i]) != 1 {
			t.Errorf("job %d handled by %v, want exactly one worker", i, seen[i])
		}
		for _, w := range seen[i] {
			perWorker[w]++
		}
	}
	for _, id := range workerIDs {
		if perWorker[id] == 0 {
			t.Errorf("worker %s got no job of %d: %v", id, n, perWorker)
		}
	}
	t.Logf("jobs per worker: %v", perWorker)
}

func TestNoReceiver(t *testing.T) {
	b := bustest.NewBroker(t)
	// Only a worker w1 (with no handler for "ev") and a lone master and agent
	// without handlers: nobody to receive any of these.
	w1 := bustest.Dial(t, b, bus.RoleWorker, "w1")
	agent := bustest.Dial(t, b, bus.RoleAgent, agentID)
	tests := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"SendTo an absent id", func(ctx context.Context) error { return w1.SendTo(ctx, "w9", "ev", nil) }},
		{"SendTo a receiver without a handler", func(ctx context.Context) error { return agent.SendTo(ctx, "w1", "ev", nil) }},
		{"SendToAgent without a handler", func(ctx context.Context) error { return w1.SendToAgent(ctx, "ev", nil) }},
		{"SendToMaster without a master", func(ctx context.Context) error { return w1.SendToMaster(ctx, "ready", nil) }},
		{"SendRandom without a handler", func(ctx context.Context) error { return agent.SendRandom(ctx, "ev", nil) }},
		{"Request an absent id", func(ctx context.Context) error { _, err := agent.Request(ctx, "w9", "ev", nil); return err }},
		{"Request without a handler", func(ctx context.Context) error { _, err := agent.Request(ctx, "w1", "ev", nil); return err }},
		{"RequestMaster without a master", func(ctx context.Context) error { _, err := agent.RequestMaster(ctx, "state", nil); return err }},
		{"Gather without a handler", func(ctx context.Context) error { _, err := agent.Gather(ctx, "ev", nil, 1); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const timeout = 150 * time.Millisecond
			start := time.Now() // before the deadline is set, so it is at least start+timeout
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			err := tt.call(ctx)
			if !errors.Is(err, bus.ErrNoReceiver) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("%s = %v, want an error wrapping ErrNoReceiver and DeadlineExceeded", tt.name, err)
			}
			if !strings.HasPrefix(err.Error(), "bus: ") {
				t.Errorf("%s = %q, want the prefix bus:", tt.name, err)
			}
			if elapsed := time.Since(start); elapsed < timeout {
				t.Errorf("%s returned after %v, before its deadline %v", tt.name, elapsed, timeout)
			}
		})
	}
}

// TestLateReceiver checks that a point-to-point send retries until its
// receiver appears: a stand-in for w9 first answers "no handler" (so the
// sender is known to be retrying), then leaves, then the real w9 connects.
func TestLateReceiver(t *testing.T) {
	b := bustest.NewBroker(t)
	sender := bustest.Dial(t, b, bus.RoleAgent, agentID)

	cred := b.Mint(bus.RoleMaster, "spy")
	spy, err := nats.Connect(b.ClientURL(), nats.UserInfo(cred.User, cred.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Close()
	nacked := make(chan struct{})
	var once sync.Once
	var sub *nats.Subscription
	sub, err = spy.Subscribe("yolk.to.w9.*.*", func(m *nats.Msg) {
		once.Do(func() {
			_ = sub.Unsubscribe()
			_ = m.Respond([]byte(`{"v":1,"kind":"nack","event":"ev","from":"w9","role":"worker","error":"no handler for ev"}`))
			close(nacked)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	sent := make(chan error, 1)
	go func() { sent <- sender.SendTo(ctx, "w9", "ev", payload{N: 9}) }()
	select {
	case <-nacked:
	case <-ctx.Done():
		t.Fatal("the stand-in got no send")
	}

	w9 := bustest.Dial(t, b, bus.RoleWorker, "w9")
	got := make(chan bus.Message, 2)
	if err := w9.On("ev", func(_ context.Context, m bus.Message) (any, error) { got <- m; return nil, nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-sent:
		if err != nil {
			t.Fatalf("SendTo(w9) with a late receiver = %v, want nil", err)
		}
	case <-ctx.Done():
		t.Fatal("SendTo(w9) did not return")
	}
	select {
	case m := <-got:
		if m.From != agentID {
			t.Errorf("w9 got a message from %q, want %q", m.From, agentID)
		}
	case <-ctx.Done():
		t.Fatal("w9 got nothing")
	}
}

func TestRequestErrors(t *testing.T) {
	b := bustest.NewBroker(t)
	w1 := bustest.Dial(t, b, bus.RoleWorker, "w1")
	w2 := bustest.Dial(t, b, bus.RoleWorker, "w2")
	agent := bustest.Dial(t, b, bus.RoleAgent, agentID)
	handlers := map[string]bus.Handler{
		"fail":  func(context.Context, bus.Message) (any, error) { return nil, errors.New("no luck") },
		"panic": func(context.Context, bus.Message) (any, error) { panic("boom") },
		"chan":  func(context.Context, bus.Message) (any, error) { return make(chan int), nil },
		"big":   func(context.Context, bus.Message) (any, error) { return strings.Repeat("x", 2<<20), nil },
	}
	for ev, h := range handlers {
		for _, w := range []*bus.Conn{w1, w2} {
			if err := w.On(ev, h); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct{ event, want string }{
		{"fail", "no luck"},
		{"panic", "handler panicked: boom"},
		{"chan", "encode reply"},
		{"big", "maximum payload exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.event, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), wait)
			defer cancel()
			m, err := agent.Request(ctx, "w1", tt.event, nil)
			var re *bus.RemoteError
			if !errors.As(err, &re) || re.From != "w1" || re.Event != tt.event || !strings.Contains(re.Message, tt.want) {
				t.Fatalf("Request(w1, %s) = %v, want a RemoteError from w1 with %q", tt.event, err, tt.want)
			}
			if m.From != "w1" {
				t.Errorf("Request(w1, %s).From = %q, want w1", tt.event, m.From)
			}
			ms, err := agent.Gather(ctx, tt.event, nil, 2)
			if err != nil || len(ms) != 2 {
				t.Fatalf("Gather(%s) = %d replies, %v, want 2", tt.event, len(ms), err)
			}
			for _, m := range ms {
				if !errors.As(m.Err, &re) || !strings.Contains(re.Message, tt.want) {
					t.Errorf("Gather(%s) reply from %s has Err %v, want a RemoteError with %q", tt.event, m.From, m.Err, tt.want)
				}
			}
		})
	}
}

// TestEnvelopeMismatchDropped publishes, with the master's rights, messages
// whose envelope does not match their subject: the worker drops them all and
// handles only the last, good one (one publisher, one route: order is kept).
func TestEnvelopeMismatchDropped(t *testing.T) {
	b := bustest.NewBroker(t)
	w3 := bustest.Dial(t, b, bus.RoleWorker, "w3")
	got := make(chan bus.Message, 10)
	if err := w3.On("ev", func(_ context.Context, m bus.Message) (any, error) { got <- m; return nil, nil }); err != nil {
		t.Fatal(err)
	}
	cred := b.Mint(bus.RoleMaster, "raw")
	raw, err := nats.Connect(b.ClientURL(), nats.UserInfo(cred.User, cred.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	bad := []string{
		`{"v":1,"kind":"event","event":"ev","from":"w2","role":"worker","data":{"N":1}}`,    // another sender
		`{"v":1,"kind":"event","event":"other","from":"w1","role":"worker","data":{"N":2}}`, // another event
		`{"v":2,"kind":"event","event":"ev","from":"w1","role":"worker","data":{"N":3}}`,    // unknown version
		`{"v":1,"kind":"event","event":"ev","from":"w1","role":"worker","data":{"N":4}`,     // bad JSON
		`{"v":1,"kind":"send","event":"ev","from":"w1","role":"worker","data":{"N":5}}`,     // a send on a fan-out route
		`not json at all`,
	}
	for _, p := range bad {
		if err := raw.Publish("yolk.app.ev.w1", []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	good := `{"v":1,"kind":"event","event":"ev","from":"w1","role":"worker","data":{"N":6}}`
	if err := raw.Publish("yolk.app.ev.w1", []byte(good)); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		var p payload
		if err := m.Decode(&p); err != nil || p.N != 6 || m.From != "w1" {
			t.Fatalf("first message handled = %+v (%+v, %v), want the good one, N 6 from w1", m, p, err)
		}
	case <-time.After(wait):
		t.Fatal("the good message was not handled")
	}
	if err := w3.Close(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("%d more messages handled after the good one, want 0", len(got))
	}
}

func TestCloseAndDone(t *testing.T) {
	b := bustest.NewBroker(t)
	w := bustest.Dial(t, b, bus.RoleWorker, "w1")
	select {
	case <-w.Done():
		t.Fatal("Done closed before Close")
	default:
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	select {
	case <-w.Done():
	default:
		t.Fatal("Done not closed after Close returned")
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close() = %v, want nil", err)
	}
	if err := w.Broadcast("ev", nil); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Broadcast after Close = %v, want ErrClosed", err)
	}
	if err := w.SendTo(t.Context(), "w2", "ev", nil); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("SendTo after Close = %v, want ErrClosed", err)
	}
}

func TestBadArguments(t *testing.T) {
	b := bustest.NewBroker(t)
	w := bustest.Dial(t, b, bus.RoleWorker, "w1")
	ctx := t.Context()
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"Broadcast(a.b)", w.Broadcast("a.b", nil), bus.ErrBadEvent},
		{"SendToApp(*)", w.SendToApp("*", nil), bus.ErrBadEvent},
		{"On(a b)", w.On("a b", nil), bus.ErrBadEvent},
		{"SendTo(bad id)", w.SendTo(ctx, "w.2", "ev", nil), bus.ErrBadID},
		{"SendToAgent(>)", w.SendToAgent(ctx, ">", nil), bus.ErrBadEvent},
		{"Broadcast(bad raw JSON)", w.Broadcast("ev", []byte("{")), bus.ErrBadData},
		{"SendToApp(too big)", w.SendToApp("ev", strings.Repeat("x", 2<<20)), nats.ErrMaxPayload},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, tt.want) || !strings.HasPrefix(tt.err.Error(), "bus: ") {
			t.Errorf("%s = %v, want an error wrapping %v, prefixed bus:", tt.name, tt.err, tt.want)
		}
	}
}

func TestDialOptions(t *testing.T) {
	tests := []struct {
		name string
		o    bus.Options
		want string
	}{
		{"bad id", bus.Options{URL: "nats://127.0.0.1:1", ID: "a.b", Role: bus.RoleWorker}, "bad id"},
		{"unknown role", bus.Options{URL: "nats://127.0.0.1:1", ID: "w1", Role: "root"}, "unknown role"},
		{"no URL", bus.Options{ID: "w1", Role: bus.RoleWorker}, "no URL"},
	}
	for _, tt := range tests {
		_, err := bus.Dial(t.Context(), tt.o)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "bus: ") {
			t.Errorf("Dial with %s = %v, want an error with %q", tt.name, err, tt.want)
		}
	}
}

// TestDialGivesUpAtDeadline dials a port nobody listens on.
func TestDialGivesUpAtDeadline(t *testing.T) {
	b := bustest.NewBroker(t)
	url := b.ClientURL()
	b.Shutdown() // now nobody listens there
	const timeout = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	start := time.Now()
	_, err := bus.Dial(ctx, bus.Options{URL: url, User: "u", Password: "p", ID: "w1", Role: bus.RoleWorker, Logger: bustest.Logger(t)})
	elapsed := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "bus: connect") {
		t.Fatalf("Dial to a closed port = %v, want a bus: connect error wrapping DeadlineExceeded", err)
	}
	if elapsed < timeout || elapsed > timeout+time.Second {
		t.Errorf("Dial to a closed port returned after %v, want about %v", elapsed, timeout)
	}
}

// TestReconnect restarts the bus on the same port: the Conn reconnects by
// itself, calls OnReconnect, and receives again.
func TestReconnect(t *testing.T) {
	const secret = "worker-secret-for-the-test"
	start := func(port int) *broker.Broker {
		b, err := broker.Start(broker.Config{Port: port, Logger: bustest.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.AddRole(bus.RoleWorker, secret); err != nil {
			t.Fatal(err)
		}
		if err := b.AddRole(bus.RoleAgent, secret); err != nil {
			t.Fatal(err)
		}
		return b
	}
	b1 := start(-1)
	url := b1.ClientURL()
	port := url[strings.LastIndexByte(url, ':')+1:]

	reconnected := make(chan struct{}, 1)
	disconnected := make(chan struct{}, 1)
	dial := func(role bus.Role, id string, o bus.Options) *bus.Conn {
		o.URL, o.User, o.Password, o.ID, o.Role, o.Logger = url, string(role), secret, id, role, bustest.Logger(t)
		ctx, cancel := context.WithTimeout(t.Context(), wait)
		defer cancel()
		c, err := bus.Dial(ctx, o)
		if err != nil {
			t.Fatalf("Dial(%s): %v", id, err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	w := dial(bus.RoleWorker, "worker-1", bus.Options{
		OnReconnect:  func() { reconnected <- struct{}{} },
		OnDisconnect: func(error) { disconnected <- struct{}{} },
	})
	got := make(chan bus.Message, 1)
	if err := w.On("ev", func(_ context.Context, m bus.Message) (any, error) { got <- m; return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if err := w.SetWire(bus.WireVersion); err != nil {
		t.Fatal(err)
	}

	b1.Shutdown()
	select {
	case <-disconnected:
	case <-time.After(wait):
		t.Fatal("OnDisconnect not called after the broker stopped")
	}
	portN, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("port of %s: %v", url, err)
	}
	b2 := start(portN)
	defer b2.Shutdown()
	select {
	case <-reconnected:
	case <-time.After(wait):
		t.Fatal("OnReconnect not called after the broker came back")
	}
	if v := w.Wire(); v != 1 { // the new bus's master has not said what its processes read
		t.Errorf("after a reconnect the Conn sends wire version %d, want 1", v)
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if err := w.Flush(ctx); err != nil { // its subscriptions are back at the server
		t.Fatal(err)
	}
	agent := dial(bus.RoleAgent, agentID, bus.Options{})
	if err := agent.SendToApp("ev", payload{N: 1}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.From != agentID {
			t.Errorf("after reconnect got a message from %q, want %q", m.From, agentID)
		}
	case <-ctx.Done():
		t.Fatal("nothing received after reconnect")
	}
	for _, c := range []*bus.Conn{agent, w} { // before b2 stops
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

// A handler of OnInline answers requests on the route's delivery goroutine:
// one at a time, in the order they came; one of On runs each on its own.
func TestOnInlineAnswersInOrder(t *testing.T) {
	b := bustest.NewBroker(t)
	agent := bustest.Dial(t, b, bus.RoleAgent, "agent-1")
	w := bustest.Dial(t, b, bus.RoleWorker, "w1")
	var running, most atomic.Int32
	var order []int
	var mu sync.Mutex
	release := make(chan struct{})
	handle := func(_ context.Context, m bus.Message) (any, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			old := most.Load()
			if n <= old || most.CompareAndSwap(old, n) {
				break
			}
		}
		var i int
		if err := m.Decode(&i); err != nil {
			return nil, err
		}
		if i == 0 {
			<-release // the first one holds the route: the others wait behind it
		}
		mu.Lock()
		order = append(order, i)
		mu.Unlock()
		return i, nil
	}
	if err := agent.OnInline("n", handle); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs := make(chan error, 10)
	if _, err := w.RequestAgent(ctx, "n", -1); err != nil { // the route is up
		t.Fatal(err)
	}
	go func() { _, err := w.RequestAgent(ctx, "n", 0); errs <- err }()
	for running.Load() == 0 { // the first request is in the handler
		time.Sleep(time.Millisecond)
	}
	for i := 1; i < 10; i++ {
		go func() { _, err := w.RequestAgent(ctx, "n", i); errs <- err }()
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	close(release)
	for range 10 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if most.Load() != 1 {
		t.Errorf("%d inline handlers ran at once, want 1", most.Load())
	}
	mu.Lock()
	if order[0] != -1 || order[1] != 0 {
		t.Errorf("answered in the order %v: the held request first", order)
	}
	mu.Unlock()

	// On again: requests run concurrently, the held one holds up nobody.
	if err := agent.On("n", handle); err != nil {
		t.Fatal(err)
	}
	release2 := make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(release2) }) // also when the test fails: Close waits for the handler
	hold := func(_ context.Context, m bus.Message) (any, error) { <-release2; return nil, nil }
	if err := agent.On("hold", hold); err != nil {
		t.Fatal(err)
	}
	go func() { _, err := w.RequestAgent(ctx, "hold", nil); errs <- err }()
	if _, err := w.RequestAgent(ctx, "n", 5); err != nil {
		t.Fatalf("a request behind a waiting one of On: %v", err)
	}
	once.Do(func() { close(release2) })
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}
