package bus

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
)

// Wire version 3 adds batches to the compact body. A burst of fire-and-forget
// events (Broadcast, SendToApp) that one Conn sends back to back to the same
// subject goes out as one NATS message, whose body is:
//
//	0     2 (the compact format)
//	1     kindBatch | role<<4
//	rest  the events' data, in the order sent, each as its length (a
//	      uvarint, at least 1) then the data (one JSON value, as the
//	      sender's Conn checked it)
//
// Why: the cost of a small message on NATS is mostly per message, not per
// byte. The server and each receiver parse its protocol line (which holds
// the subject, yolk.app.<event>.<sender>) a byte at a time, and nats.go
// hands each message to the subscription's goroutine on its own. A batch
// pays that once for all its events.
//
// When: the first event of a burst is published at once, alone, and wakes
// the Conn's flusher goroutine; the events sent before the flusher runs wait
// in the batch, and the flusher publishes it. So an event sent on its own
// goes out as before, with no added wait, and a batch holds what a sender
// produced in the time it takes a goroutine to be scheduled. nats.go hands
// its buffer to the socket the same way.
//
// Order: every other publish of the Conn (another subject, a send, a
// request, a reply, a gather) and Flush and Close publish the pending batch
// first, so a receiver sees one goroutine's messages in the order it sent
// them, as it would without batches. JetStream's calls ([Conn.JetStream])
// do not: Flush first when a store write must come after the events sent
// before it.
//
// Errors: an event that joins a batch is accepted, as a fire-and-forget
// event is; if the batch cannot be published after all (the connection is
// closing, or its reconnect buffer is full), the Conn logs how many events
// it dropped.

// wireBatch is the wire version whose Conns send batches, and read them.
const wireBatch = 3

// kindBatch is the kind of a batch body; it is not a kind of a JSON envelope.
const kindBatch kind = kindNack + 1

// Bounds of a batch; both are lowered to fit the server's payload limit.
const (
	// maxBatch bounds a batch's body, so that a batch never holds up a
	// receiver for long.
	maxBatch = 64 << 10
	// maxBatchItem bounds an event that may join a batch; a larger one goes
	// alone.
	maxBatchItem = 8 << 10
)

// batcher holds a Conn's pending batch.
type batcher struct {
	mu      sync.Mutex // held across every publish of the Conn, to keep them in order
	burst   bool       // the flusher has been woken and has not run yet
	subject string     // of the pending batch
	items   int        // events in the pending batch
	buf     []byte     // the pending batch's body
	limit   int        // the pending batch's bound: maxBatch, or less if the payload limit is
	wake    chan struct{}
	held    bool // tests only (HoldBatch): the flusher leaves the burst open
}

// flusher publishes each burst's batch once the burst's first event wakes
// it. It returns when the connection is closed for good, after one last try
// (which logs what it cannot send).
func (c *Conn) flusher() {
	bt := &c.batch
	for {
		select {
		case <-bt.wake:
		case <-c.done:
			c.flushBatch()
			return
		}
		bt.mu.Lock()
		if !bt.held {
			c.flushBatchLocked()
			bt.burst = false
		}
		bt.mu.Unlock()
	}
}

// batchEvent sends a fire-and-forget event to subject, in a batch when a
// burst is under way (wire 3 and later). The data is encoded before the
// batch's lock is taken: a MarshalJSON method may send too.
func (c *Conn) batchEvent(subject string, data any) error {
	bp := getBuf()
	defer putBuf(bp)
	body, err := appendData(appendCompactHead((*bp)[:0], kindEvent, "", c.role, ""), data)
	*bp = body
	if err != nil {
		return err
	}
	item := body[2:] // the data, after the compact head

	bt := &c.batch
	bt.mu.Lock()
	defer bt.mu.Unlock()
	if !bt.burst {
		bt.burst = true
		select {
		case bt.wake <- struct{}{}:
		default:
		}
		return natsErr(c.nc.Publish(subject, body))
	}
	if bt.items > 0 && (bt.subject != subject || len(bt.buf)+binary.MaxVarintLen64+len(item) > bt.limit) {
		c.flushBatchLocked()
	}
	if bt.items == 0 {
		// The server's limit, as it told this connection (a reconnect may
		// bring another): a batch must never be refused where its events
		// would each have passed.
		bt.limit = min(maxBatch, int(c.nc.MaxPayload()))
	}
	if len(item) > min(maxBatchItem, bt.limit/4) {
		c.flushBatchLocked()
		return natsErr(c.nc.Publish(subject, body))
	}
	if c.closedForGood() { // the flusher is gone: say so now, as Publish would
		return natsErr(nats.ErrConnectionClosed)
	}
	if bt.items == 0 {
		bt.subject = subject
		bt.buf = append(bt.buf[:0], wireCompact, byte(kindBatch)|roleCode(c.role)<<4)
	}
	bt.buf = binary.AppendUvarint(bt.buf, uint64(len(item)))
	bt.buf = append(bt.buf, item...)
	bt.items++
	return nil
}

// flushBatchLocked publishes the pending batch, if there is one. A failure
// is logged: the events in it were accepted, fire-and-forget, by earlier
// calls.
func (c *Conn) flushBatchLocked() {
	bt := &c.batch
	if bt.items == 0 {
		return
	}
	if err := c.nc.Publish(bt.subject, bt.buf); err != nil {
		c.log.Warn("bus: drop a batch of events", "subject", bt.subject, "events", bt.items, "err", natsErr(err))
	}
	bt.items = 0
	if cap(bt.buf) > 2*maxBatch { // one large burst does not keep a large buffer
		bt.buf = nil
	}
	bt.buf = bt.buf[:0]
}

// closedForGood reports whether the connection is closed for good.
func (c *Conn) closedForGood() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// flushBatch publishes the pending batch, if there is one, so that what the
// caller publishes next comes after it.
func (c *Conn) flushBatch() {
	c.batch.mu.Lock()
	c.flushBatchLocked()
	c.batch.mu.Unlock()
}

// publishOrdered publishes b to subject after the pending batch.
func (c *Conn) publishOrdered(subject string, b []byte) error {
	c.batch.mu.Lock()
	defer c.batch.mu.Unlock()
	c.flushBatchLocked()
	return c.nc.Publish(subject, b)
}

// batchItems checks a batch's events, the body after its first 2 bytes, and
// returns how many there are. A batch holds at least one.
func batchItems(b []byte) (int, error) {
	n := 0
	for i := 0; i < len(b); n++ {
		size, k := binary.Uvarint(b[i:])
		if k <= 0 || size == 0 || size > uint64(len(b)-i-k) {
			return 0, fmt.Errorf("%w: event %d of a batch is cut short", errBadEnvelope, n+1)
		}
		i += k + int(size)
	}
	if n == 0 {
		return 0, fmt.Errorf("%w: an empty batch", errBadEnvelope)
	}
	return n, nil
}

// nextItem returns the first event of a checked batch's rest, and the rest
// after it. The event's capacity ends with it: a handler that appends to its
// Data gets a copy, and the events after it stay as they were.
func nextItem(b []byte) (item, rest []byte) {
	size, k := binary.Uvarint(b)
	end := k + int(size)
	return b[k:end:end], b[end:]
}
