package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/yolkgo/yolk/bus"
)

// Replica is a worker's half of the refresh protocol: it keeps the worker's Store
// at the service's shared snapshot (a watch on it brings every new revision, and the
// latest one at the start and after a reconnect), runs the pull and force tasks
// through the agent, and reads the remote itself while the agent is away.
type Replica struct {
	conn    Messenger
	src     Source // read only while the agent is away
	store   *Store
	metrics *Metrics
	log     *slog.Logger
	shared  *Shared

	// OnUpdate, if set, is called after each new snapshot is installed.
	OnUpdate func(*Snapshot)
	// PullEvery is the pull interval. While the agent is away (its timers
	// with it) the workers check the remote this often themselves, one of
	// them each time. 0 turns that off.
	PullEvery time.Duration
	// Now is the clock of UpdatedAt, for people; nil means time.Now. It
	// orders nothing.
	Now func() time.Time

	updated signal        // notified after each install
	restart chan struct{} // Reconnected: watch again from the latest entry
	reads   atomic.Uint64 // reads of the remote that returned its data set
}

// Fetches returns how many times this replica read the remote's data set
// itself (while the agent was away): a request answered "not modified" or
// not at all is not one. yolk.State.Fetches reports it.
func (r *Replica) Fetches() uint64 { return r.reads.Load() }

// NewReplica returns a replica that keeps store fresh. Run starts it.
func NewReplica(conn Messenger, src Source, store *Store, m *Metrics, log *slog.Logger) *Replica {
	return &Replica{conn: conn, src: src, store: store, metrics: m, log: log, restart: make(chan struct{}, 1)}
}

func (r *Replica) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Run follows the shared snapshot sh until ctx is done. It calls ready once the
// store holds a snapshot: the shared one, or, when there is none and the agent is
// away, one this worker read from the remote and published.
func (r *Replica) Run(ctx context.Context, sh *Shared, ready func()) error {
	r.shared = sh
	followed := make(chan struct{})
	go sh.Follow(ctx, r.restart, r.watched, func(err error) {
		if errors.Is(err, errWatch) {
			r.log.Warn("watch of the shared snapshot", "err", err)
			return
		}
		r.log.Error("shared snapshot refused; the last good one keeps serving", "err", err)
	}, func() { close(followed) })
	select {
	case <-followed:
	case <-ctx.Done():
		return nil
	}
	wait := 100 * time.Millisecond
	for r.store.Load() == nil {
		changed := r.updated.wait()
		if r.store.Load() != nil {
			break
		}
		if !r.agentThere(ctx) {
			if err := r.fetchRemote(ctx, "start"); err != nil {
				r.log.Warn("the agent is away and the remote failed; waiting for the first snapshot", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
	ready()

	var tick <-chan time.Time
	if r.PullEvery > 0 {
		t := time.NewTicker(r.PullEvery)
		defer t.Stop()
		tick = t.C
	}
	var lease uint64
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
			lease = r.pullIfAway(ctx, lease)
		}
	}
}

// Reconnected is called after the worker's bus connection came back: the master
// may have restarted, with its stores empty. The replica watches the shared
// snapshot again from its latest entry. Safe to call from any goroutine.
func (r *Replica) Reconnected() {
	select {
	case r.restart <- struct{}{}:
	default:
	}
}

// watched installs a snapshot the watch delivered: if it is of a higher
// revision than the store's, or if it is the first entry of a watch and of a
// lower revision. A watch starts with the latest entry, so that happens only
// when the bucket started over (a master that restarted): revisions only grow
// within one. Later entries of a watch come in revision order, and one lower
// than the store's is older than what this worker published itself and
// installed meanwhile.
func (r *Replica) watched(s *Snapshot, first bool) {
	r.metrics.BusMessage("refresh")
	if cur := r.store.Load(); first && cur != nil && s.Revision < cur.Revision {
		r.log.Warn("the shared snapshot started over (the master restarted); taking it", "version", s.Version, "revision", s.Revision, "had", cur.Revision)
		s = s.WithBy(s.By, r.now())
		r.store.p.Store(s)
		r.installed(s, "bus")
		return
	}
	r.install(s, s.By, "bus")
}

// install swaps s in (if of a higher revision) and logs it as egg's example does.
func (r *Replica) install(s *Snapshot, by, via string) bool {
	if cur := r.store.Load(); cur != nil && s.Revision > cur.Revision && s.Digest == cur.Digest && s.Version == cur.Version {
		// The same data published again: take the revision, quietly.
		q := cur.withRevision(s.Revision)
		q.object = s.object
		if r.store.Swap(q) {
			r.updated.notify()
			r.metrics.SetSnapshot(q)
		}
		return false
	}
	s = s.WithBy(by, r.now())
	if !r.store.Swap(s) {
		return false
	}
	r.installed(s, via)
	return true
}

// installed reports a new snapshot s: to waiters, metrics, the log and OnUpdate.
func (r *Replica) installed(s *Snapshot, via string) {
	by := s.By
	r.updated.notify()
	r.metrics.Refresh(by)
	r.metrics.SetSnapshot(s)
	r.log.Info("update memory cache from remote", "by", by, "version", s.Version, "revision", s.Revision, "via", via, "items", len(s.Items))
	if r.OnUpdate != nil {
		r.OnUpdate(s)
	}
}

// Pull is the pull_refresh task: ask the agent to check the remote; what changed
// reaches every worker through the shared snapshot. When the agent cannot be
// reached, this worker checks the remote itself.
func (r *Replica) Pull(ctx context.Context) error {
	return r.fetch(ctx, fetchRequest{By: "pull"})
}

// Force is the force_refresh task, run in every worker: the agent fetches the
// remote once for the run seq, however many workers ask, and every worker ends on
// the result.
func (r *Replica) Force(ctx context.Context, seq uint64) error {
	return r.fetch(ctx, fetchRequest{By: "force", Seq: seq})
}

func (r *Replica) fetch(ctx context.Context, req fetchRequest) error {
	r.log.Info("start update by "+req.By, "by", req.By)
	// Keep half of the run's time for reading the remote ourselves, should the
	// agent be away (restarting, say).
	reach := 30 * time.Second
	if d, ok := ctx.Deadline(); ok {
		reach = min(reach, time.Until(d)/2)
	}
	actx, cancel := context.WithTimeout(ctx, reach)
	m, err := r.conn.RequestAgent(actx, EventFetch, req)
	cancel()
	if errors.Is(err, bus.ErrNoReceiver) {
		r.log.Warn("agent unreachable; checking the remote myself", "by", req.By, "err", err)
		return r.fetchRemote(ctx, req.By)
	}
	if err != nil {
		return fmt.Errorf("cache: ask the agent to %s: %w", req.By, err)
	}
	var rep fetchReply
	if err := m.Decode(&rep); err != nil {
		return fmt.Errorf("cache: fetch reply: %w", err)
	}
	if rep.Err != "" { // the agent counts its failure in its own metrics
		return fmt.Errorf("cache: the agent could not read the remote: %s", rep.Err)
	}
	return r.await(ctx, rep.Revision)
}

// await waits until the store holds revision rev or a later one.
func (r *Replica) await(ctx context.Context, rev uint64) error {
	for {
		changed := r.updated.wait()
		if s := r.store.Load(); rev == 0 || (s != nil && s.Revision >= rev) {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("cache: waiting for revision %d: %w", rev, ctx.Err())
		}
	}
}

// pingWait bounds the look for the agent. It answers in well under a
// millisecond when it is there; the bus keeps retrying a request nobody
// receives until its deadline, so this is what a look costs while it is away.
const pingWait = 250 * time.Millisecond

// agentThere reports whether the agent is on the bus: whether it answers, or
// took the request and is too busy to answer in time (reading a large or slow
// remote, say: then it is no reason for the workers to read the remote too).
func (r *Replica) agentThere(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, pingWait)
	defer cancel()
	_, err := r.conn.RequestAgent(ctx, EventFetch, fetchRequest{By: "ping"})
	return !errors.Is(err, bus.ErrNoReceiver)
}

// pullIfAway is one tick of the pull interval: while the agent is away, the worker
// that takes the pull lease checks the remote. It returns the lease revision to
// pass next time.
func (r *Replica) pullIfAway(ctx context.Context, lease uint64) uint64 {
	if r.agentThere(ctx) {
		return lease
	}
	took, lease, err := r.shared.TakePull(ctx, lease, r.conn.ID())
	if err != nil {
		r.log.Warn("pull while the agent is away", "err", err)
		return lease
	}
	if took {
		r.log.Info("start update by pull", "by", "pull", "agent", "away")
		if err := r.fetchRemote(ctx, "pull"); err != nil {
			r.log.Warn("pull while the agent is away", "err", err)
		}
	}
	return lease
}

// fetchRemote reads the remote directly (the agent is away) and publishes what
// changed, by compare-and-set on the snapshot the read started from.
func (r *Replica) fetchRemote(ctx context.Context, by string) error {
	cur := r.store.Load()
	head, err := r.shared.Head(ctx) // the base of the compare-and-set: this read starts after it
	if err != nil {
		return err
	}
	var s *Snapshot
	if cur != nil && by != "force" {
		s, err = r.src.Check(ctx, cur.Version)
	} else {
		s, err = r.src.Fetch(ctx)
	}
	if errors.Is(err, ErrNotModified) {
		s, err = cur, nil
	}
	r.metrics.Fetch(err)
	if err == nil && s != cur {
		r.reads.Add(1)
	}
	if err != nil {
		return err
	}
	if cur != nil && s.Version == cur.Version && s.Digest == cur.Digest && head.Revision != 0 {
		return nil
	}
	p, err := r.shared.Publish(ctx, s, by, head)
	if errors.Is(err, ErrConflict) {
		r.log.Info("another process published while this one read the remote; keeping theirs", "by", by, "version", s.Version)
		return nil
	}
	if err != nil {
		return err
	}
	r.install(p, by, "remote")
	return nil
}
