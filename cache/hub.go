package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/yolkgo/yolk/bus"
)

// Hub is the agent's half of the refresh protocol: it reads the remote source for
// everyone (one fetch per change however many workers there are) and publishes each
// new snapshot to the shared copy, which every worker watches.
//
// Fetches are coalesced: while one is in flight, every push, pull or force that
// arrives joins the next one, so a burst of changes costs two fetches, not one per
// change.
type Hub struct {
	conn   Messenger
	src    Source
	log    *slog.Logger
	store  Store // the shared snapshot as the hub last published or read it
	shared *Shared

	// Now is the clock of UpdatedAt, for people; nil means time.Now. It orders
	// nothing: a clock that steps either way changes no decision.
	Now func() time.Time
	// Fleet, if set before Run, makes the hub one agent of a fleet's cache
	// (see Fleet).
	Fleet *Fleet
	fleet atomic.Pointer[fleetState] // set by Run when Fleet is
	// Metrics, if set before Run, count the hub's requests to the remote and
	// the snapshots it publishes, in the agent's registry.
	Metrics *Metrics
	// OnUpdate, if set before Run, is called after each snapshot the hub
	// read from the remote and published.
	OnUpdate func(*Snapshot)
	reads    atomic.Uint64 // reads of the remote that returned its data set

	mu       sync.Mutex
	want     uint64 // newest generation asked for
	started  uint64 // generation of the fetch in flight, or of the last one
	done     uint64 // newest generation finished
	wantBy   string
	wantFull bool
	lastErr  error
	force    map[uint64]uint64 // force run seq -> generation that serves it
	finished signal
	kick     chan struct{}
	stopped  chan struct{} // closed when Run returns: requests still waiting get an error
	// stale is set when the hub's snapshot may not be the bucket's latest
	// entry (a publish met another, or the bus came back): the next fetch
	// reads the bucket again first (see sync).
	stale atomic.Bool
}

// NewHub returns a hub that reads src and talks on conn. Run starts it.
func NewHub(conn Messenger, src Source, log *slog.Logger) *Hub {
	return &Hub{conn: conn, src: src, log: log, force: make(map[uint64]uint64), kick: make(chan struct{}, 1), stopped: make(chan struct{})}
}

// Fetches returns how many times the hub read the remote's data set: a
// request answered "not modified" or not at all is not one.
// yolk.State.Fetches reports it.
func (h *Hub) Fetches() uint64 { return h.reads.Load() }

// Load returns the hub's current snapshot, nil before the first one.
func (h *Hub) Load() *Snapshot { return h.store.Load() }

func (h *Hub) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// Run serves the protocol on sh until ctx is done. It takes the shared snapshot
// (a restarted agent starts from what the service holds, without reading the
// remote for it), registers its handler, makes one conditional check of the remote,
// calls ready, and then runs the fetch loop. A remote that fails is retried with
// backoff (minRetry doubling to maxRetry), and what is asked meanwhile (pushes,
// pulls, forces) waits for the retry; workers keep the last good snapshot
// meanwhile.
func (h *Hub) Run(ctx context.Context, sh *Shared, ready func()) error {
	defer close(h.stopped) // the bus sends the replies of requests under way before it closes: end them
	h.shared = sh
	if h.Fleet != nil {
		var wg sync.WaitGroup
		defer wg.Wait()
		fctx, cancel := context.WithCancel(ctx)
		defer cancel()
		sctx, scancel := context.WithTimeout(fctx, fleetSettle)
		h.startFleet(fctx, sctx, &wg)
		scancel()
	}
	for wait := minRetry; ; wait = min(2*wait, maxRetry) {
		target, _ := h.target()
		_, err := h.sync(ctx, target)
		if err == nil {
			break
		}
		h.log.Warn("read the shared snapshot; again", "err", err, "retryIn", wait.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	if err := h.conn.On(EventFetch, h.handleFetch); err != nil {
		return err
	}
	if s := h.store.Load(); s != nil {
		h.log.Info("took the service's snapshot", "version", s.Version, "revision", s.Revision)
	}
	h.request("start", h.store.Load() == nil)
	var (
		backoff time.Duration    // 0 while the remote answers; else the current retry delay
		retry   <-chan time.Time // fires when the next try is due
	)
	failed := func(err error, msg string) {
		backoff = min(max(2*backoff, minRetry), maxRetry)
		wait := backoff - rand.N(backoff/5+1) // jitter: processes that failed together do not retry together
		retry = time.After(wait)
		h.log.Warn(msg, "err", err, "retryIn", wait.Round(time.Millisecond).String())
	}
	if err := h.fetchOnce(ctx); err != nil {
		failed(err, "remote source failed at start; retrying")
	}
	ready()

	for {
		select {
		case <-ctx.Done():
			return nil
		case <-h.kick:
			if backoff > 0 {
				// The remote is failing: what was asked (a push, a pull, a force)
				// stays queued and the retry serves it. Fetching at the rate of the
				// change feed would hammer a source that is down, and flood the log.
				continue
			}
		case <-retry:
			h.request("retry", false) // joins what is queued, if anything
		}
		if err := h.fetchOnce(ctx); err != nil {
			failed(err, "remote source failed; the last good snapshot keeps serving")
			continue
		}
		backoff, retry = 0, nil
	}
}

// The hub's retry delays after a failed read of the remote: minRetry doubling to
// maxRetry, each wait up to a fifth shorter (jitter). maxRetry bounds how stale the
// workers stay after a failing remote recovers: changes announced meanwhile wait
// for the next retry; one read every 5 s does not hammer a source that is down.
const (
	minRetry = 500 * time.Millisecond
	maxRetry = 5 * time.Second
)

// Changed is the push path: the remote's change feed announced version ("" when
// the version is unknown: a conditional check tells).
func (h *Hub) Changed(version string) {
	if s := h.store.Load(); s != nil && s.Version == version {
		return
	}
	h.request("push", false)
}

// Reconnected is called after the agent's bus connection came back: the master may
// have restarted, with its stores empty. The hub reads the bucket again and checks
// the remote, which publishes its own snapshot again if the bucket has none. Safe
// to call from any goroutine.
func (h *Hub) Reconnected() {
	h.stale.Store(true)
	h.request("catchup", false)
	if f := h.fs(); f != nil {
		f.kick() // the host's copy may be empty: copy the fleet's latest again
	}
}

// Resync is called when the change feed comes back after a break: events may
// have been missed, and the source may have restarted with versions that start
// over (so a conditional check could wrongly answer "not modified"). Only a full
// fetch is safe.
func (h *Hub) Resync() {
	h.request("push", true)
}

// request asks the fetch loop for a fetch and returns the generation that serves it.
// A request made while a fetch is queued but not yet started joins that one.
func (h *Hub) request(by string, full bool) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.requestLocked(by, full)
}

func (h *Hub) requestLocked(by string, full bool) uint64 {
	if h.want == h.started {
		h.want++
		h.wantBy = by
	}
	h.wantFull = h.wantFull || full
	select {
	case h.kick <- struct{}{}:
	default:
	}
	return h.want
}

// await waits until generation gen has finished and returns its error.
func (h *Hub) await(ctx context.Context, gen uint64) error {
	for {
		ch := h.finished.wait()
		h.mu.Lock()
		done, err := h.done, h.lastErr
		h.mu.Unlock()
		if done >= gen {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-h.stopped:
			return errors.New("cache: the agent is stopping")
		}
	}
}

// fetchOnce runs the queued fetch, installs what changed and announces it.
func (h *Hub) fetchOnce(ctx context.Context) error {
	h.mu.Lock()
	if h.started == h.want {
		h.mu.Unlock()
		return nil
	}
	gen, by, full := h.want, h.wantBy, h.wantFull
	h.started, h.wantFull = gen, false
	h.mu.Unlock()

	err := h.fetch(ctx, by, full)

	h.mu.Lock()
	h.done, h.lastErr = gen, err
	if err != nil {
		h.wantFull = h.wantFull || full // the retry must be as thorough
	}
	h.mu.Unlock()
	h.finished.notify()
	return err
}

func (h *Hub) fetch(ctx context.Context, by string, full bool) error {
	// The base of the compare-and-set: this read starts after it. The hub's
	// snapshot is the bucket's latest entry, but for a race with a worker's
	// publish or a bucket that started over: then the publish fails, or the bus
	// came back, and the hub reads the bucket again first.
	target, reads := h.target()
	if !reads {
		h.log.Debug("another host's agent reads the remote", "by", by)
		return nil
	}
	cur := h.store.Load()
	head := Head{}
	if cur != nil {
		head = Head{Revision: cur.Revision, object: cur.object}
	}
	if h.stale.Load() || cur == nil {
		var err error
		if head, err = h.sync(ctx, target); err != nil {
			return err
		}
		cur = h.store.Load()
	}
	var s *Snapshot
	var err error
	if full || cur == nil {
		s, err = h.src.Fetch(ctx)
	} else {
		s, err = h.src.Check(ctx, cur.Version)
	}
	if errors.Is(err, ErrNotModified) {
		s, err = cur, nil
	}
	h.Metrics.Fetch(err)
	if err != nil {
		return err
	}
	if s != cur {
		h.reads.Add(1)
	}
	if cur != nil && s.Digest == cur.Digest && s.Version == cur.Version {
		if head.Revision != 0 {
			h.log.Debug("remote unchanged", "by", by, "version", cur.Version)
			h.published(target)
			return nil
		}
		// The bucket is empty: the master restarted. Seed it again.
		by = "catchup"
	} else if cur != nil && s.Version == cur.Version {
		// Only a full fetch can see this: a source that served other data under
		// the same version (a wrong ETag) earlier or now. The fresh data wins:
		// snapshots are told apart by digest, not by name.
		h.log.Warn("remote served different data under the same version; taking the fresh data", "version", s.Version)
	}
	p, err := target.Publish(ctx, s, by, head)
	if errors.Is(err, ErrConflict) {
		// A worker published while the agent read (it was away, or is
		// starting): this read may be older than theirs. Read again from theirs.
		h.log.Info("the shared snapshot changed while reading the remote; checking again", "by", by, "version", s.Version)
		h.stale.Store(true)
		h.request(by, full)
		return nil
	}
	if err != nil {
		return err
	}
	h.store.p.Store(p.WithBy(by, h.now())) // the bucket's latest, even if it started over (a lower revision)
	h.log.Info("new version from remote", "by", by, "version", p.Version, "revision", p.Revision, "items", len(p.Items))
	h.Metrics.Refresh(by)
	h.Metrics.SetSnapshot(h.store.Load())
	if h.OnUpdate != nil {
		h.OnUpdate(h.store.Load())
	}
	h.published(target)
	if f := h.fs(); f != nil && target == f.local && h.Fleet.OnPart != nil {
		f.cfg.OnPart(f.getPart(), h.store.Load()) // what this host serves, read alone
	}
	return nil
}

// sync takes the bucket's latest entry as the hub's snapshot (the bucket's word
// is final: it may have started over, or hold what a worker published) and
// returns it as the base of the next publish. An empty bucket leaves the hub's
// snapshot, to be published again; an entry that does not decode is logged, and
// the next read of the remote replaces it.
func (h *Hub) sync(ctx context.Context, target *Shared) (Head, error) {
	s, head, err := target.Latest(ctx)
	if err != nil && head.Revision == 0 {
		return head, err
	}
	h.stale.Store(false)
	switch {
	case err != nil:
		h.log.Error("shared snapshot refused; the next read of the remote replaces it", "err", err)
	case s != nil:
		if cur := h.store.Load(); cur == nil || cur.Revision != s.Revision || cur.Digest != s.Digest {
			h.store.p.Store(s.WithBy(s.By, h.now()))
		}
	}
	return head, nil
}

// handleFetch serves a worker's pull or force: one fetch per force run for the whole
// service, and a pull check that joins whatever fetch is queued.
func (h *Hub) handleFetch(ctx context.Context, m bus.Message) (any, error) {
	var req fetchRequest
	if err := m.Decode(&req); err != nil {
		return nil, fmt.Errorf("cache: bad fetch request: %w", err)
	}
	before := h.store.Load()
	var gen uint64
	switch req.By {
	case "ping":
		return h.reply(before, before, nil), nil
	case "force":
		h.mu.Lock()
		g, ok := h.force[req.Seq]
		if !ok {
			g = h.requestLocked("force", true)
			if len(h.force) > 64 {
				clear(h.force)
			}
			h.force[req.Seq] = g
		}
		h.mu.Unlock()
		gen = g
	case "pull":
		gen = h.request("pull", false)
	default:
		return nil, fmt.Errorf("cache: fetch by %q: want pull or force", req.By)
	}
	err := h.await(ctx, gen)
	return h.localReply(ctx, h.reply(before, h.store.Load(), err)), nil
}

func (h *Hub) reply(before, after *Snapshot, err error) fetchReply {
	r := fetchReply{Changed: after != before}
	if after != nil {
		r.Version, r.Revision = after.Version, after.Revision
	}
	if err != nil {
		r.Err = err.Error()
	}
	return r
}
