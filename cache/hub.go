package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/yolkgo/yolk/bus"
)

// Hub is the agent's half of the refresh protocol: it holds the service's newest
// snapshot, reads the remote source for everyone (one fetch per change however many
// workers there are), and announces each new snapshot to every worker.
//
// Fetches are coalesced: while one is in flight, every push, pull or force that
// arrives joins the next one, so a burst of changes costs two fetches, not one per
// change.
type Hub struct {
	conn  Messenger
	src   Source
	log   *slog.Logger
	store Store

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
}

// NewHub returns a hub that reads src and talks on conn. Run starts it.
func NewHub(conn Messenger, src Source, log *slog.Logger) *Hub {
	return &Hub{conn: conn, src: src, log: log, force: make(map[uint64]uint64), kick: make(chan struct{}, 1)}
}

// Load returns the hub's current snapshot, nil before the first one.
func (h *Hub) Load() *Snapshot { return h.store.Load() }

// Run serves the protocol until ctx is done. It registers its handlers, warms up
// (from the newest worker if any holds data, then one conditional check of the
// remote), calls ready, and then runs the fetch loop. A remote that fails is retried
// with backoff (minRetry doubling to maxRetry), and what is asked meanwhile (pushes,
// pulls, forces) waits for the retry; workers keep the last good snapshot meanwhile.
// While the hub has no snapshot, each retry also looks again for a worker that holds
// one.
func (h *Hub) Run(ctx context.Context, ready func()) error {
	for event, handler := range map[string]bus.Handler{
		EventSnapshot: serveChunks(&h.store),
		EventFetch:    h.handleFetch,
	} {
		if err := h.conn.On(event, handler); err != nil {
			return err
		}
	}
	h.warmFromWorkers(ctx)
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
			if h.store.Load() == nil {
				// Nothing yet, and the remote fails: a worker that answered too
				// late at the start (or started since) may hold the service's data.
				h.warmFromWorkers(ctx)
			}
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
	cur := h.store.Load()
	var (
		s   *Snapshot
		err error
	)
	if full || cur == nil {
		s, err = h.src.Fetch(ctx)
	} else {
		s, err = h.src.Check(ctx, cur.Version)
	}
	if errors.Is(err, ErrNotModified) {
		h.log.Debug("remote unchanged", "by", by, "version", cur.Version)
		return nil
	}
	if err != nil {
		return err
	}
	if cur != nil && s.Version == cur.Version {
		if !full || bytes.Equal(s.itemsJSON(), cur.itemsJSON()) {
			return nil
		}
		// Only a full fetch can see this: a source that served other data under
		// the same version (a wrong ETag) earlier or now. The fresh data wins.
		h.log.Warn("remote served different data under the same version; taking the fresh data", "version", s.Version)
	}
	s = s.WithBy(by, time.Now())
	if !h.store.Swap(s) {
		return nil
	}
	h.log.Info("new version from remote", "by", by, "version", s.Version, "items", len(s.Items))
	if err := h.conn.SendToApp(EventRefresh, announce(s, by, h.conn.ID())); err != nil {
		h.log.Error("announce refresh", "version", s.Version, "err", err)
	}
	return nil
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
	after := h.store.Load()
	reply := fetchReply{Changed: after != before}
	if after != nil {
		reply.Version = after.Version
	}
	if err != nil {
		reply.Err = err.Error()
	}
	return reply, nil
}

// warmFromWorkers copies the newest snapshot the workers hold, so that a restarted
// agent does not read the remote for data the service already has.
func (h *Hub) warmFromWorkers(ctx context.Context) {
	gctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond) // workers answer in well under a millisecond
	defer cancel()
	replies, err := h.conn.Gather(gctx, EventVersion, nil, 0)
	if err != nil {
		return // no worker answered: a cold start
	}
	var best versionInfo
	holder := ""
	for _, m := range replies {
		var v versionInfo
		if m.Decode(&v) == nil && v.Version != "" && v.FetchedAt.After(best.FetchedAt) {
			best, holder = v, m.From
		}
	}
	if holder == "" {
		return
	}
	s, err := copyFrom(ctx, askProcess(h.conn, holder), holder, "")
	if err != nil || s == nil {
		h.log.Warn("copy a worker's snapshot", "from", holder, "err", err)
		return
	}
	h.store.Swap(s.WithBy("catchup", time.Now()))
	h.log.Info("warmed from a worker", "from", holder, "version", s.Version)
}
