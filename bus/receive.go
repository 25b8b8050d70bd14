package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// Message is one received message.
type Message struct {
	Event string
	From  string // the sender's id, pinned by the bus: it cannot be forged
	Role  Role   // the sender's role as declared in its envelope
	// Data is the payload as raw JSON ("null" or nil when there is none).
	// The handler owns it and may keep it. The sender's Conn checked it is one
	// valid JSON value before publishing; a message of wire version 1 is
	// checked again on receipt, one of a later version is not (every process
	// on the bus has a credential and sends through a Conn), so a handler that
	// passes Data on unparsed trusts its sender. [Message.Decode] reports bad
	// JSON. The events of one batch (wire version 3) share one buffer, which
	// lives as long as any of their Data is kept; appending to Data copies it.
	Data json.RawMessage
	// Err is set on a [Conn.Gather] reply whose handler returned an error.
	Err error
}

// Decode unmarshals the payload into v.
func (m Message) Decode(v any) error {
	data := []byte(m.Data)
	if len(data) == 0 {
		data = []byte("null")
	}
	if err := json.Unmarshal(data, v); err != nil {
		return opErr("decode "+m.Event+" from "+m.From, err)
	}
	return nil
}

// Handler handles one event. For a request ([Conn.Request],
// [Conn.RequestMaster], [Conn.Gather]) its return value, JSON-encoded, is the
// reply and a non-nil error reaches the requester as a [*RemoteError]; for
// other messages the return value is ignored and an error is logged.
//
// The handlers of the events and sends of one route (broadcasts, app events,
// point-to-point, random) run one at a time in arrival order, so a slow handler
// delays the next messages of its route: hand slow work off. Requests promise
// no order: each runs in its own goroutine, and Close waits for them and
// sends their replies before it closes the connection. ctx is cancelled when
// the Conn is closed for good: so not while Close waits for the handlers,
// unless they outlast its timeout. A handler that waits for something that
// stops before Close (a loop of the process, say) must also watch for that.
// A panic is recovered and logged (and returned to a requester).
type Handler func(ctx context.Context, m Message) (any, error)

// RemoteError is the error a request's handler returned, as the requester sees it.
type RemoteError struct {
	From, Event string
	Message     string
}

func (e *RemoteError) Error() string {
	return "bus: handler of " + e.Event + " at " + e.From + ": " + e.Message
}

// On makes h handle event, replacing an earlier handler; a nil h removes it.
// It is safe to call at any time, also from a handler.
//
// h handles what the verbs of egg's messenger and the requests send this
// process: [Conn.Broadcast], [Conn.SendToApp], [Conn.SendToAgent],
// [Conn.SendTo], [Conn.SendRandom], [Conn.Request], [Conn.RequestAgent] and
// [Conn.Gather]. It never handles what is sent to the master with
// [Conn.SendToMaster] or [Conn.RequestMaster]: the master registers those
// handlers with [Conn.OnMaster]. A handler is reached only through the
// routes it was registered for, whatever the event's name.
//
// A request's handler runs in a goroutine of its own, so that one that waits
// (for a slow read, say) holds up nothing; see [Conn.OnInline] for handlers
// that never wait.
func (c *Conn) On(event string, h Handler) error {
	return c.setHandler("on", &c.handlers, event, handler{h: h})
}

// OnInline is [Conn.On] for a handler that returns at once (it computes its
// answer from what it holds, never waits on the network, a lock held long or
// another message): it runs on the route's delivery goroutine, requests
// included, so a request is answered without handing it to a new goroutine,
// which saves a thread's wake-up per round trip. While it runs, the route's
// next messages wait, and requests to it are answered one at a time, in order.
func (c *Conn) OnInline(event string, h Handler) error {
	return c.setHandler("on inline", &c.handlers, event, handler{h: h, inline: true})
}

// handler is a registered Handler and how it runs.
type handler struct {
	h      Handler
	inline bool // on the delivery goroutine (OnInline)
}

// OnMaster makes h handle event when it comes through the master route:
// sent with [Conn.SendToMaster] or [Conn.RequestMaster] by another process.
// Only the master's Conn has that route; on any other it returns an error.
// It replaces an earlier handler; a nil h removes it. It is safe to call at
// any time, also from a handler.
//
// The bus decides who may send which event on the master route: the agent and
// the workers only "ready" and "state", the control role (the `master status`
// and `master reload` command line, with the control credential) only
// "status" and "reload" (see [Permissions]). So a handler registered here for
// "status" is reached with the control credential only: not by a Broadcast,
// a SendTo or a Request to the master's id (those reach the handlers of
// [Conn.On], and a send or request without one fails with [ErrNoReceiver]),
// nor by a worker's or the agent's SendToMaster (the bus refuses it).
func (c *Conn) OnMaster(event string, h Handler) error {
	if c.role != RoleMaster {
		return opErr("on master "+event, fmt.Errorf("a %s receives nothing sent to the master", c.role))
	}
	return c.setHandler("on master", &c.toMaster, event, handler{h: h})
}

// setHandler sets or removes the handler of event in the table at p.
func (c *Conn) setHandler(op string, p *atomic.Pointer[map[string]handler], event string, h handler) error {
	if err := ValidEvent(event); err != nil {
		return opErr(op, err)
	}
	c.onMu.Lock()
	defer c.onMu.Unlock()
	old := *p.Load()
	next := make(map[string]handler, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	if h.h == nil {
		delete(next, event)
	} else {
		next[event] = h
	}
	p.Store(&next)
	return nil
}

// route is one subscription of a Conn.
type route struct {
	subject string
	queue   string
	kinds   uint8 // bit 1<<kind for each kind the route accepts
	fanout  bool  // a request without a handler gets no answer (Gather)
	master  bool  // the master route: handled by the handlers of OnMaster, not On
	fleet   bool  // a fleet route: the sender is id@host, and so is this process in its replies
}

const (
	acceptEvent = 1 << kindEvent
	acceptSend  = 1 << kindSend
	acceptReq   = 1 << kindReq
)

// routes returns the subscriptions of a process of role with that id.
func routes(role Role, id string, fleet bool) []route {
	all := route{subject: prefixAll + "*.*", kinds: acceptEvent, fanout: true}
	to := route{subject: prefixTo + id + ".*.*", kinds: acceptSend | acceptReq}
	switch role {
	case RoleWorker:
		rs := []route{
			all,
			{subject: prefixApp + "*.*", kinds: acceptEvent | acceptReq, fanout: true},
			to,
			{subject: prefixRandom + "*.*", queue: QueueApp, kinds: acceptSend | acceptReq},
		}
		if fleet {
			rs = append(rs, route{subject: prefixFleetApp + "*.*", kinds: acceptEvent | acceptReq, fanout: true, fleet: true})
		}
		return rs
	case RoleAgent:
		return []route{all, {subject: prefixAgent + "*.*", kinds: acceptSend | acceptReq}, to}
	case RoleMaster:
		return []route{all, {subject: prefixMaster + "*.*", kinds: acceptSend | acceptReq, master: true}, to}
	}
	return nil
}

// receive checks one message against its subject and hands it to its handler.
func (c *Conn) receive(r route, m *nats.Msg) {
	event, from, ok := eventFrom(m.Subject)
	if !ok {
		c.log.Warn("bus: drop message: bad subject", "subject", m.Subject)
		return
	}
	table := &c.handlers
	if r.master {
		table = &c.toMaster
	}
	entry, known := (*table.Load())[event]
	if !known { // a handler's event passed ValidEvent when it was registered
		if err := ValidEvent(event); err != nil { // no handler can have it: say so, do not answer
			c.log.Warn("bus: drop message: bad event name", "subject", m.Subject, "err", err)
			return
		}
	}
	e, err := decodeEnvelope(m.Data)
	if err != nil {
		c.log.Warn("bus: drop message", "subject", m.Subject, "err", err)
		return
	}
	if e.wire == wireJSON && (string(e.event) != event || string(e.from) != from) {
		c.log.Warn("bus: drop message: envelope does not match its subject",
			"subject", m.Subject, "event", string(e.event), "from", string(e.from))
		return
	}
	if e.kind == kindBatch {
		c.receiveBatch(r, m, entry.h, event, from, e)
		return
	}
	if r.kinds&(1<<e.kind) == 0 || (e.kind != kindEvent && m.Reply == "") {
		c.log.Warn("bus: drop message: unexpected kind", "subject", m.Subject, "kind", e.kind)
		return
	}
	msg := Message{Event: event, From: from, Role: e.role, Data: e.data}
	h := entry.h

	switch e.kind {
	case kindEvent:
		if h == nil {
			c.log.Debug("bus: no handler", "event", event, "from", from, "route", r.subject)
			return
		}
		if _, err := c.run(h, msg); err != nil {
			c.log.Warn("bus: handler", "event", event, "from", from, "err", err)
		}
	case kindSend:
		if h == nil {
			c.reply(m.Reply, c.id, e.wire, kindNack, event, nil, "no handler for "+event)
			return
		}
		c.reply(m.Reply, c.id, e.wire, kindReply, event, nil, "") // acknowledged on receipt
		if _, err := c.run(h, msg); err != nil {
			c.log.Warn("bus: handler", "event", event, "from", from, "err", err)
		}
	case kindReq:
		if h == nil {
			if !r.fanout {
				c.reply(m.Reply, c.id, e.wire, kindNack, event, nil, "no handler for "+event)
			}
			return
		}
		reply, self, w := m.Reply, c.id, e.wire
		if r.fleet {
			self = FleetID(c.host, c.id)
		}
		answer := func() {
			v, err := c.run(h, msg)
			if err != nil {
				c.reply(reply, self, w, kindReply, event, nil, err.Error())
				return
			}
			c.reply(reply, self, w, kindReply, event, v, "")
		}
		if entry.inline {
			answer()
			return
		}
		// Requests promise no order, and a handler that waits (for a fetch, say)
		// must not hold up the events of its route: each runs on its own.
		c.requests.Add()
		go func() { // Close waits for it
			defer c.requests.Done()
			answer()
		}()
	}
}

// receiveBatch hands each event of a batch to h, in order. A batch that is
// not well formed is dropped whole, before any of its events is handled.
func (c *Conn) receiveBatch(r route, m *nats.Msg, h Handler, event, from string, e envelope) {
	if r.kinds&acceptEvent == 0 || !r.fanout {
		c.log.Warn("bus: drop message: unexpected kind", "subject", m.Subject, "kind", e.kind)
		return
	}
	n, err := batchItems(e.data)
	if err != nil {
		c.log.Warn("bus: drop message", "subject", m.Subject, "err", err)
		return
	}
	if h == nil {
		c.log.Debug("bus: no handler", "event", event, "from", from, "route", r.subject, "events", n)
		return
	}
	msg := Message{Event: event, From: from, Role: e.role}
	for rest := e.data; len(rest) > 0; {
		msg.Data, rest = nextItem(rest)
		if _, err := c.run(h, msg); err != nil {
			c.log.Warn("bus: handler", "event", event, "from", from, "err", err)
		}
	}
}

// run calls h, turning a panic into an error.
func (c *Conn) run(h Handler, m Message) (v any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v", p)
			c.log.Error("bus: handler panicked", "event", m.Event, "from", m.From,
				"panic", p, "stack", string(debug.Stack()))
		}
	}()
	return h(c.hctx, m)
}

// reply publishes, as from, an ack, a nack or a request's reply to a
// requester's inbox, in wire version w (the request's).
func (c *Conn) reply(to, from string, w uint8, k kind, event string, v any, errMsg string) {
	bp := getBuf()
	defer putBuf(bp)
	b, err := appendBody((*bp)[:0], w, k, event, from, c.role, v, errMsg)
	if err != nil {
		errMsg = fmt.Sprintf("encode reply: %v", err)
		b, _ = appendBody((*bp)[:0], w, k, event, from, c.role, nil, errMsg) // nil always encodes
	}
	*bp = b
	if err := c.publishOrdered(to, b); err != nil {
		c.log.Warn("bus: reply", "event", event, "err", err)
		if errMsg == "" {
			// e.g. the reply is larger than the payload limit: say so instead
			b, _ = appendBody((*bp)[:0], w, k, event, from, c.role, nil, fmt.Sprintf("send reply: %v", err))
			*bp = b
			_ = c.publishOrdered(to, b) // logged above if it fails too
		}
	}
}
