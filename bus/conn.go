package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/yolkgo/yolk/internal/inflight"
)

// Options configure [Dial].
type Options struct {
	// URL is where the bus listens, e.g. nats://127.0.0.1:4222. Ignored when
	// InProcess is set.
	URL string
	// User and Password are the credential the broker minted for this process.
	User     string
	Password string
	// ID is this process's id on the bus (its pid in fork mode); it must pass [ValidID].
	ID string
	// Role is this process's role; it decides what the Conn subscribes.
	Role Role
	// Logger receives the connection's events and every asynchronous error.
	// nil means slog.Default().
	Logger *slog.Logger
	// ReconnectWait is the pause between reconnect attempts; 0 means 100ms.
	// The Conn reconnects for ever.
	ReconnectWait time.Duration
	// InProcess, when set, connects in-process (the master's own connection):
	// pass the broker's InProcess().
	InProcess nats.InProcessConnProvider
	// OnReconnect is called after each reconnect, once the subscriptions are
	// sent again: a hook to catch up on what was missed. It runs on the
	// connection's callback goroutine and must not block.
	OnReconnect func()
	// OnDisconnect is called when the connection is lost (err may be nil).
	// It runs on the connection's callback goroutine and must not block.
	OnDisconnect func(err error)
	// Host is this process's host in a fleet (see [FleetID]), "" on a single
	// host. With it, the Conn's inbox is the fleet's (replies from other hosts
	// reach it), a worker also takes the fleet's SendToFleet and GatherFleet,
	// and FleetJetStream reaches the cluster's JetStream in Domain.
	Host string
	// Domain is the JetStream domain of the fleet's cluster; used with Host.
	Domain string
	// OnError is called with every asynchronous error (a refused publish or
	// subscription, a slow consumer) after it is logged. It runs on the
	// connection's callback goroutine and must not block.
	OnError func(err error)
}

// Conn is one process's connection to the bus. Its methods are safe for
// concurrent use. Close it when done.
type Conn struct {
	nc       *nats.Conn
	id       string
	role     Role
	host     string // in a fleet; "" on a single host
	domain   string // the fleet cluster's JetStream domain
	log      *slog.Logger
	handlers atomic.Pointer[map[string]handler]    // by event, for every route but the master's ([Conn.On])
	toMaster atomic.Pointer[map[string]handler]    // by event, for the master route ([Conn.OnMaster])
	onMu     sync.Mutex                            // serialises On, OnMaster and the additions to subjects
	subjects atomic.Pointer[map[subjectKey]string] // the fan-out subjects built so far (see subject)

	// hctx is the context passed to handlers (like http.Server's base
	// context): it is cancelled when the connection is closed for good.
	hctx     context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	closing  atomic.Bool
	requests inflight.Counter // request handlers under way
	sent     sentCounts
	wire     atomic.Uint32 // the wire version of what this Conn sends (see SetWire)
	batch    batcher       // fire-and-forget events waiting to go as one message (wire 3)

	// The subscriptions of the routes, and for each a channel closed when
	// it has delivered its last message (its callback has returned for good).
	subs      []*nats.Subscription
	delivered []chan struct{}
}

const (
	defaultReconnectWait = 100 * time.Millisecond
	connectLogEvery      = 10 * time.Second // while Dial waits for the bus
	maxConnectTimeout    = 2 * time.Second
	minConnectTimeout    = 200 * time.Millisecond
	// Pending limits of every subscription: far above the payload limit, so
	// a burst is queued rather than dropped.
	pendingMsgs  = 1 << 20
	pendingBytes = 256 << 20
)

// Dial connects to the bus, subscribes this role's routes and flushes, so
// that once it returns the Conn receives everything published to it. ctx
// bounds the first connect: Dial retries a refused or failed connection with
// a short backoff until ctx is done (a bad credential fails at once); after
// that the Conn reconnects for ever by itself. Cancelling ctx after Dial
// returns has no effect on the Conn.
//
// Register handlers with [Conn.On] (the master also with [Conn.OnMaster])
// right after Dial and before telling anyone this process is ready: fan-out
// events that arrive for an event without a handler are dropped.
func Dial(ctx context.Context, o Options) (*Conn, error) {
	if err := ValidID(o.ID); err != nil {
		return nil, opErr("dial", err)
	}
	if !o.Role.Valid() {
		return nil, fmt.Errorf("bus: dial: unknown role %q", o.Role)
	}
	if o.Host != "" {
		if err := ValidID(FleetID(o.Host, o.ID)); err != nil {
			return nil, opErr("dial", fmt.Errorf("host %q: %w", o.Host, err))
		}
		if o.Domain == "" {
			return nil, errors.New("bus: dial: a fleet host without the cluster's JetStream domain")
		}
	}
	if o.URL == "" && o.InProcess == nil {
		return nil, errors.New("bus: dial: no URL")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ReconnectWait <= 0 {
		o.ReconnectWait = defaultReconnectWait
	}
	c := &Conn{id: o.ID, role: o.Role, host: o.Host, domain: o.Domain, log: o.Logger}
	c.hctx, c.cancel = context.WithCancel(context.Background())
	c.handlers.Store(&map[string]handler{})
	c.toMaster.Store(&map[string]handler{})
	c.subjects.Store(&map[subjectKey]string{})
	c.wire.Store(wireJSON)
	c.batch.wake = make(chan struct{}, 1)

	if err := c.connect(ctx, o); err != nil {
		c.cancel()
		return nil, err
	}
	go c.flusher() // until the connection is closed for good
	if err := c.subscribe(ctx); err != nil {
		c.closing.Store(true)
		c.nc.Close()
		return nil, err
	}
	return c, nil
}

// connect makes the first connection, retrying until ctx is done.
func (c *Conn) connect(ctx context.Context, o Options) error {
	where := redact(o.URL)
	if o.InProcess != nil {
		where = "in-process"
	}
	backoff := 20 * time.Millisecond
	var logged time.Time // a wait for the bus is never silent, nor noisy
	for {
		timeout := maxConnectTimeout
		if dl, ok := ctx.Deadline(); ok {
			timeout = min(max(time.Until(dl), minConnectTimeout), maxConnectTimeout)
		}
		done := make(chan struct{})
		nc, err := nats.Connect(o.URL, c.natsOptions(o, timeout, done)...)
		if err == nil {
			c.nc, c.done = nc, done
			return nil
		}
		if errors.Is(err, nats.ErrAuthorization) {
			return fmt.Errorf("bus: connect to %s as %s: %w", where, o.User, err)
		}
		if time.Since(logged) >= connectLogEvery {
			c.log.Warn("bus: cannot connect yet; retrying", "url", where, "err", err)
			logged = time.Now()
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("bus: connect to %s: %w (last error: %w)", where, ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// natsOptions returns the options of one connect attempt; done is closed
// when that connection is closed for good.
func (c *Conn) natsOptions(o Options, timeout time.Duration, done chan struct{}) []nats.Option {
	var once sync.Once
	opts := []nats.Option{
		nats.Name(o.ID),
		nats.UserInfo(o.User, o.Password),
		nats.CustomInboxPrefix(inboxPrefix(o.Host, o.ID)),
		nats.Timeout(timeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(o.ReconnectWait),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			c.asyncError(sub, err)
			if o.OnError != nil {
				o.OnError(err)
			}
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			// The bus this Conn reconnects to may be another master's, of
			// another yolk: version 1 until it says otherwise (SetWire).
			c.wire.Store(wireJSON)
			if !c.closing.Load() {
				c.log.Warn("bus: disconnected", "err", err)
			}
			if o.OnDisconnect != nil {
				o.OnDisconnect(err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.log.Info("bus: reconnected", "url", nc.ConnectedUrlRedacted())
			if o.OnReconnect != nil {
				o.OnReconnect()
			}
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			once.Do(func() {
				if !c.closing.Load() {
					c.log.Error("bus: connection closed for good", "err", nc.LastError())
				}
				c.cancel()
				close(done)
			})
		}),
	}
	if o.InProcess != nil {
		opts = append(opts, nats.InProcessServer(o.InProcess))
	}
	return opts
}

// asyncError logs an error the server or the client reported asynchronously:
// a refused subscription or publish, a slow consumer. None of them is
// returned by the call that caused it.
func (c *Conn) asyncError(sub *nats.Subscription, err error) {
	attrs := []any{"err", err}
	if sub != nil {
		attrs = append(attrs, "subject", sub.Subject)
		if errors.Is(err, nats.ErrSlowConsumer) {
			msgs, bytes, _ := sub.Pending()
			dropped, _ := sub.Dropped()
			attrs = append(attrs, "pendingMsgs", msgs, "pendingBytes", bytes, "dropped", dropped)
		}
	}
	c.log.Error("bus: asynchronous error", attrs...)
}

// subscribe subscribes this role's routes and flushes; a refused
// subscription fails Dial.
func (c *Conn) subscribe(ctx context.Context) error {
	for _, r := range routes(c.role, c.id, c.host != "") {
		cb := func(m *nats.Msg) { c.receive(r, m) }
		var sub *nats.Subscription
		var err error
		if r.queue != "" {
			sub, err = c.nc.QueueSubscribe(r.subject, r.queue, cb)
		} else {
			sub, err = c.nc.Subscribe(r.subject, cb)
		}
		if err == nil {
			err = sub.SetPendingLimits(pendingMsgs, pendingBytes)
		}
		if err != nil {
			return fmt.Errorf("bus: subscribe %s: %w", r.subject, err)
		}
		delivered := make(chan struct{})
		sub.SetClosedHandler(func(string) { close(delivered) })
		c.subs = append(c.subs, sub)
		c.delivered = append(c.delivered, delivered)
	}
	if err := c.Flush(ctx); err != nil {
		return err
	}
	// A refused subscription is reported before the flush's PONG.
	if err := c.nc.LastError(); errors.Is(err, nats.ErrPermissionViolation) {
		return fmt.Errorf("bus: subscribe as %s %s: %w", c.role, c.id, err)
	}
	return nil
}

// ID returns this process's id.
func (c *Conn) ID() string { return c.id }

// Role returns this process's role.
func (c *Conn) Role() Role { return c.role }

// SetWire sets the wire version of what the Conn sends from now on: 1, the
// JSON envelope every version of yolk reads (a new Conn's), or up to
// [WireVersion]. Set a newer version only once every process that may
// receive from this one reads it: the master says so in its answer to a
// child's ready report. A Conn reads every version whatever it sends,
// answers a request in the request's version, and sends what goes to other
// hosts of a fleet in version 1. Losing the connection sets it back to 1:
// the bus it reconnects to may be another master's, which has to say again.
func (c *Conn) SetWire(v int) error {
	if v < wireJSON || v > WireVersion {
		return fmt.Errorf("bus: wire version %d: this bus sends 1 to %d", v, WireVersion)
	}
	c.wire.Store(uint32(v))
	return nil
}

// Wire is the wire version of what the Conn sends (see [Conn.SetWire]).
func (c *Conn) Wire() int { return int(c.wire.Load()) }

func (c *Conn) sendWire() uint8 { return uint8(c.wire.Load()) }

// Flush waits until the bus has processed everything sent so far (not until
// the receivers have handled it), or until ctx is done.
func (c *Conn) Flush(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		// nats.go insists on a deadline; cancelling ctx still works.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 24*time.Hour)
		defer cancel()
	}
	c.flushBatch()
	if err := c.nc.FlushWithContext(ctx); err != nil {
		return opErr("flush", natsErr(err))
	}
	return nil
}

// Close drains the Conn: it stops receiving, lets the handlers finish what
// was already received (requests included, whose replies it sends), flushes
// what was sent, then closes. So a request whose handler is under way gets
// its reply, and one that comes after Close began finds no receiver. The
// handlers get nats.go's drain timeout (30s); those still running then see
// their ctx cancelled as the connection closes, and Close, which still waits
// for them, returns an error wrapping nats.ErrDrainTimeout. While the
// connection is down it closes at once. Close returns once the connection is
// closed and the handlers have returned, and may be called more than once.
// Do not call it from a handler: it waits for the handlers.
func (c *Conn) Close() error {
	c.closing.Store(true)
	timeout := c.nc.Opts.DrainTimeout
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	finished := c.finish(deadline.C)
	c.flushBatch() // the handlers are done (or out of time): nothing adds to it but late callers
	if !finished {
		c.nc.Close() // flushes what is buffered, and cancels the handlers' ctx
	}
	switch err := c.nc.Drain(); {
	case err == nil:
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionDraining):
	case errors.Is(err, nats.ErrConnectionReconnecting):
		// nats.go closed it at once: nothing can be flushed while disconnected.
	default:
		c.nc.Close()
	}
	<-c.done
	for _, d := range c.delivered {
		<-d
	}
	<-c.requests.Idle()
	if !finished {
		return opErr("close", fmt.Errorf("handlers still running after %v: %w", timeout, nats.ErrDrainTimeout))
	}
	if err := c.nc.LastError(); errors.Is(err, nats.ErrDrainTimeout) {
		return opErr("close", err)
	}
	return nil
}

// finish stops the subscriptions of the routes and waits, until stop, for
// the handlers of what they had received: first the callbacks of the routes,
// which start the request handlers, then the request handlers, which send
// their replies while the connection is still open. It reports whether they
// all ended. While the connection is down it does nothing: no reply could be
// sent, and nats.go closes such a connection at once.
func (c *Conn) finish(stop <-chan time.Time) bool {
	if !c.nc.IsConnected() {
		return true
	}
	for _, sub := range c.subs {
		_ = sub.Drain() // an error: closed already, as by an earlier Close
	}
	for _, d := range c.delivered {
		select {
		case <-d:
		case <-stop:
			return false
		}
	}
	idle := c.requests.Idle()
	select {
	case <-idle:
		return true
	default:
	}
	c.log.Debug("bus: close: waiting for the request handlers under way")
	select {
	case <-idle:
		return true
	case <-stop:
		return false
	}
}

// Done returns a channel that is closed when the connection is closed for
// good: after Close, or when the bus refused it (a revoked credential). A
// child process should exit then.
func (c *Conn) Done() <-chan struct{} { return c.done }

// redact hides a password given in the URL itself.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(bad URL)"
	}
	return u.Redacted()
}

// opError is an error of one operation: "bus: <op>: <cause>".
type opError struct {
	op  string
	err error
}

func opErr(op string, err error) error { return &opError{op: op, err: err} }

func (e *opError) Error() string {
	return "bus: " + e.op + ": " + strings.TrimPrefix(e.err.Error(), "bus: ")
}

func (e *opError) Unwrap() error { return e.err }

// natsErr maps nats.go's closed-connection errors to ErrClosed.
func natsErr(err error) error {
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionDraining) {
		return fmt.Errorf("%w (%w)", ErrClosed, err)
	}
	return err
}
