package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Broadcast sends event to the master, the agent and every worker, this
// process too. It is fire-and-forget: at most once to each process
// subscribed when it is published, and never an error for absent receivers.
// data: nil is null, []byte and json.RawMessage are sent as they are (one
// valid JSON value), anything else is JSON-encoded. Data no receiver would
// accept (arrays and objects nested deeper than 1000 levels, say) is an error
// wrapping [ErrBadData], for every verb, before anything is published.
func (c *Conn) Broadcast(event string, data any) error {
	c.sent.inc(verbBroadcast)
	return c.publish("broadcast", prefixAll, event, data)
}

// SendToApp sends event to every worker, like egg's sendToApp. Fire-and-
// forget as [Conn.Broadcast]; use [Conn.Gather] for a confirmed fan-out.
//
// In wire version 3 the events one Conn sends in a burst to one subject
// share NATS messages (see batch.go): the first returns the publish's error,
// one that joins a batch returns nil, and if its batch cannot be published
// after all (the connection is closing, or disconnected with its reconnect
// buffer full) the Conn logs what it dropped.
func (c *Conn) SendToApp(event string, data any) error {
	c.sent.inc(verbSendToApp)
	return c.publish("send to app", prefixApp, event, data)
}

// publish sends a fire-and-forget event to prefix + event + "." + id.
func (c *Conn) publish(op, prefix, event string, data any) error {
	return c.publishAs(op, prefix, event, c.id, c.sendWire(), data)
}

// publishAs sends a fire-and-forget event to prefix + event + "." + from, in
// wire version w.
func (c *Conn) publishAs(op, prefix, event, from string, w uint8, data any) error {
	subject, err := c.subject(prefix, event, from)
	if err != nil {
		return opErr(op, err)
	}
	if w >= wireBatch {
		if err := c.batchEvent(subject, data); err != nil {
			return opErr(op+" "+event, err)
		}
		return nil
	}
	bp := getBuf()
	defer putBuf(bp)
	b, err := appendBody((*bp)[:0], w, kindEvent, event, from, c.role, data, "")
	if err != nil {
		return opErr(op+" "+event, err)
	}
	*bp = b
	if err := c.publishOrdered(subject, b); err != nil {
		return opErr(op+" "+event, natsErr(err))
	}
	return nil
}

// subjectKey names a subject a Conn sends to, whose sender for a prefix is
// always the same (its id, or its fleet id on the fleet's prefix).
type subjectKey struct{ prefix, event string }

// maxSubjects bounds the subjects a Conn keeps: an application that makes up
// event names without end builds each subject, it does not keep them all.
const maxSubjects = 256

// subject returns prefix + event + "." + from, having checked event, from
// the subjects built so far: many messages to one subject build and check it
// once, not per message.
func (c *Conn) subject(prefix, event, from string) (string, error) {
	key := subjectKey{prefix, event}
	if s, ok := (*c.subjects.Load())[key]; ok {
		return s, nil
	}
	if err := ValidEvent(event); err != nil {
		return "", err
	}
	s := prefix + event + "." + from
	c.onMu.Lock()
	defer c.onMu.Unlock()
	if old := *c.subjects.Load(); len(old) < maxSubjects {
		next := make(map[subjectKey]string, len(old)+1)
		for k, v := range old {
			next[k] = v
		}
		next[key] = s
		c.subjects.Store(&next)
	}
	return s, nil
}

// SendToAgent sends event to the agent and waits for the agent's Conn to
// acknowledge it (on receipt, before its handler runs). While there is no
// agent (it restarts) or it has no handler for event, it retries until ctx is
// done, then returns an error wrapping [ErrNoReceiver].
func (c *Conn) SendToAgent(ctx context.Context, event string, data any) error {
	c.sent.inc(verbSendToAgent)
	return c.send(ctx, "send", "agent", prefixAgent, event, data)
}

// SendTo sends event to the process with that id, acknowledged and retried
// as [Conn.SendToAgent].
func (c *Conn) SendTo(ctx context.Context, id, event string, data any) error {
	c.sent.inc(verbSendTo)
	if err := ValidID(id); err != nil {
		return opErr("send "+event, err)
	}
	return c.send(ctx, "send", id, prefixTo+id+".", event, data)
}

// SendRandom sends event to one worker chosen by the bus (a queue group),
// acknowledged and retried as [Conn.SendToAgent]. One call is delivered to at
// most one worker.
func (c *Conn) SendRandom(ctx context.Context, event string, data any) error {
	c.sent.inc(verbSendRandom)
	return c.send(ctx, "send", "a random worker", prefixRandom, event, data)
}

// SendToMaster sends event to the master, acknowledged and retried as
// [Conn.SendToAgent]; the master handles it with a handler of
// [Conn.OnMaster]. Workers and the agent may send only "ready" and "state",
// the control role only "status" and "reload": the bus refuses any other
// (the Conn logs the refusal) and the call fails when ctx ends. The master
// itself may not (it fails at once): the master route carries what the
// others tell the master.
func (c *Conn) SendToMaster(ctx context.Context, event string, data any) error {
	c.sent.inc(verbSendToMaster)
	if err := c.fromOthers(); err != nil {
		return opErr("send "+event+" to master", err)
	}
	return c.send(ctx, "send", "master", prefixMaster, event, data)
}

// Request sends event to the process with that id and returns its handler's
// reply. It retries while nobody with that id (or no handler for event) is
// there, until ctx is done: then the error wraps [ErrNoReceiver]; if the
// receiver got the request but did not answer in time, the error wraps ctx's
// error. A handler's error is returned as a [*RemoteError].
func (c *Conn) Request(ctx context.Context, id, event string, data any) (Message, error) {
	c.sent.inc(verbRequest)
	if err := ValidID(id); err != nil {
		return Message{}, opErr("request "+event, err)
	}
	return c.request(ctx, id, prefixTo+id+".", event, data)
}

// RequestMaster is [Conn.Request] to the master, answered by a handler of
// [Conn.OnMaster]. The control role may ask only "status" and "reload", the
// agent and the workers only "ready" and "state"; the master itself may not
// (as [Conn.SendToMaster]).
func (c *Conn) RequestMaster(ctx context.Context, event string, data any) (Message, error) {
	c.sent.inc(verbRequestMaster)
	if err := c.fromOthers(); err != nil {
		return Message{}, opErr("request "+event+" from master", err)
	}
	return c.request(ctx, "master", prefixMaster, event, data)
}

// fromOthers refuses the master route to the master's own Conn: the bus lets
// the master publish anywhere, and its handlers of OnMaster are for the
// other processes (status and reload for the control credential only).
func (c *Conn) fromOthers() error {
	if c.role == RoleMaster {
		return errors.New("the master does not send to itself on the master route")
	}
	return nil
}

// RequestAgent is [Conn.Request] to the agent, whatever its id: a worker in fork
// mode does not know the agent's pid.
func (c *Conn) RequestAgent(ctx context.Context, event string, data any) (Message, error) {
	c.sent.inc(verbRequestAgent)
	return c.request(ctx, "agent", prefixAgent, event, data)
}

func (c *Conn) send(ctx context.Context, op, to, prefix, event string, data any) error {
	_, err := c.roundTrip(ctx, kindSend, prefix, event, data)
	if err != nil {
		return opErr(op+" "+event+" to "+to, err)
	}
	return nil
}

func (c *Conn) request(ctx context.Context, to, prefix, event string, data any) (Message, error) {
	e, err := c.roundTrip(ctx, kindReq, prefix, event, data)
	if err != nil {
		return Message{}, opErr("request "+event+" from "+to, err)
	}
	m := Message{Event: event, From: string(e.from), Role: e.role, Data: e.data}
	if e.err != "" {
		return m, &RemoteError{From: m.From, Event: event, Message: e.err}
	}
	return m, nil
}

// Retry pauses of a point-to-point send while nobody receives it.
const (
	firstRetry = 20 * time.Millisecond
	maxRetry   = 250 * time.Millisecond
)

// roundTrip publishes a send or a request to prefix + event + "." + id and
// returns the reply, retrying on no responders and on nacks until ctx is done.
func (c *Conn) roundTrip(ctx context.Context, k kind, prefix, event string, data any) (envelope, error) {
	var subject string
	if strings.HasPrefix(prefix, prefixTo) { // one per receiver, which may come and go: not kept
		if err := ValidEvent(event); err != nil {
			return envelope{}, err
		}
		subject = prefix + event + "." + c.id
	} else {
		var err error
		if subject, err = c.subject(prefix, event, c.id); err != nil {
			return envelope{}, err
		}
	}
	bp := getBuf()
	defer putBuf(bp)
	b, err := appendBody((*bp)[:0], c.sendWire(), k, event, c.id, c.role, data, "")
	if err != nil {
		return envelope{}, err
	}
	*bp = b

	wait := firstRetry
	absent := false // an earlier attempt found nobody
	for {
		c.flushBatch() // what this goroutine sent before goes first
		m, err := c.nc.RequestWithContext(ctx, subject, b)
		switch {
		case err == nil:
			e, err := decodeEnvelope(m.Data)
			if err != nil {
				return e, fmt.Errorf("bad reply: %w", err)
			}
			switch e.kind {
			case kindReply:
				return e, nil
			case kindNack:
				// The receiver is there but not ready for this event: retry.
			default:
				return e, fmt.Errorf("bad reply: kind %s", e.kind)
			}
		case errors.Is(err, nats.ErrNoResponders):
			// Nobody subscribed: retry.
		case ctx.Err() != nil && absent:
			// ctx ended during a retry: nobody was there the last time we knew.
			return envelope{}, fmt.Errorf("%w (%w)", ErrNoReceiver, ctx.Err())
		case ctx.Err() != nil:
			return envelope{}, fmt.Errorf("no reply: %w", ctx.Err())
		default:
			return envelope{}, natsErr(err)
		}
		absent = true
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return envelope{}, fmt.Errorf("%w (%w)", ErrNoReceiver, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, maxRetry)
	}
}

// Gather sends a request for event to every worker and collects their
// replies until it has want of them or ctx is done (want <= 0: until ctx is
// done, so give ctx a deadline). Workers without a handler for event do not
// answer; a handler's error is in that reply's [Message.Err]. It returns the
// replies it has; with none, an error wrapping [ErrNoReceiver].
func (c *Conn) Gather(ctx context.Context, event string, data any, want int) ([]Message, error) {
	c.sent.inc(verbGather)
	return c.gather(ctx, prefixApp, c.id, c.sendWire(), event, data, want)
}

// gather is Gather on prefix, sent as from in wire version w.
func (c *Conn) gather(ctx context.Context, prefix, from string, w uint8, event string, data any, want int) ([]Message, error) {
	op := "gather " + event
	if err := ValidEvent(event); err != nil {
		return nil, opErr("gather", err)
	}
	bp := getBuf()
	defer putBuf(bp)
	b, err := appendBody((*bp)[:0], w, kindReq, event, from, c.role, data, "")
	if err != nil {
		return nil, opErr(op, err)
	}
	*bp = b

	inbox := c.nc.NewInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, opErr(op, natsErr(err))
	}
	defer sub.Unsubscribe()
	if err := sub.SetPendingLimits(pendingMsgs, pendingBytes); err != nil {
		return nil, opErr(op, err)
	}
	c.flushBatch()
	if err := c.nc.PublishRequest(prefix+event+"."+from, inbox, b); err != nil {
		return nil, opErr(op, natsErr(err))
	}
	var out []Message
	for want <= 0 || len(out) < want {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return out, opErr(op, natsErr(err))
		}
		e, err := decodeEnvelope(m.Data)
		if err != nil || e.kind != kindReply {
			c.log.Warn("bus: drop gather reply", "event", event, "err", err, "kind", e.kind)
			continue
		}
		r := Message{Event: event, From: string(e.from), Role: e.role, Data: e.data}
		if e.err != "" {
			r.Err = &RemoteError{From: r.From, Event: event, Message: e.err}
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, opErr(op, fmt.Errorf("%w (%w)", ErrNoReceiver, ctx.Err()))
	}
	return out, nil
}
