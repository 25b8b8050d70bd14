package cache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/yolkgo/yolk/lease"
)

// In a fleet of hosts, the cache's one authority is the fleet's shared copy on
// the NATS cluster: one agent, the holder of a lease, reads the remote for
// every host and publishes there; every agent copies each of the fleet's
// snapshots into its host's shared copy, which the host's workers watch as
// on a single host. So the whole fleet makes one fetch per change, and every
// host's snapshots follow the fleet's revisions, which only grow.
//
// An agent whose host cannot reach the cluster reads the remote itself, as on
// a single host, and says so (its part is PartAlone). When the cluster comes
// back, it checks the remote once more before it takes the fleet's
// snapshots again: the fleet's latest may be older than what it read alone,
// and no host goes back.

// The parts an agent plays in a fleet's cache.
const (
	PartLeader   = "leader"   // holds the lease: reads the remote for every host
	PartFollower = "follower" // copies the leader's snapshots to its host
	PartAlone    = "alone"    // the cluster cannot be reached: reads the remote itself
)

// Fleet is what a hub needs in a fleet: set Hub.Fleet before Run.
type Fleet struct {
	// Shared is the fleet's shared copy, on the cluster.
	Shared *Shared
	// Lease elects the agent that reads the remote. The hub holds it while it
	// runs.
	Lease *lease.Lease
	// OnPart, if set, is called with the agent's part each time it changes,
	// and with the host's snapshot each time a new one is copied in. It must
	// not block.
	OnPart func(part string, s *Snapshot)
}

// fs returns the hub's side of its fleet, nil on a single host (or before Run).
func (h *Hub) fs() *fleetState { return h.fleet.Load() }

// fleetState is the hub's side of a fleet.
type fleetState struct {
	cfg     *Fleet
	local   *Shared // the host's shared copy
	part    atomic.Value
	rejoin  atomic.Bool // a check of the remote is due before the fleet's snapshots are copied again
	alone   atomic.Bool // this agent published a read of its own while alone
	restart chan struct{}

	partMu sync.Mutex // serialises setPart

	mu       sync.Mutex
	copied   uint64                   // the fleet revision last copied to (or found on) the host
	localRev uint64                   // the host's revision of that copy
	copies   signal                   // notified after each copy
	last     atomic.Pointer[Snapshot] // the host's snapshot as last copied or found
}

// hostSnapshot is the host's latest snapshot as the hub knows it.
func (h *Hub) hostSnapshot() *Snapshot {
	f := h.fs()
	if s := f.last.Load(); s != nil {
		if cur := h.store.Load(); cur == nil || f.getPart() != PartAlone {
			return s
		}
	}
	return h.store.Load()
}

// awaitCopy waits until the fleet's revision rev (or a later one) is on the
// host, and returns the host's revision of it.
func (f *fleetState) awaitCopy(ctx context.Context, rev uint64) (uint64, error) {
	for {
		ch := f.copies.wait()
		f.mu.Lock()
		copied, local := f.copied, f.localRev
		f.mu.Unlock()
		if copied >= rev {
			return local, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

func (f *fleetState) getPart() string {
	p, _ := f.part.Load().(string)
	return p
}

// partOf is the part that a lease state gives.
func partOf(st lease.State) string {
	switch {
	case st.Held:
		return PartLeader
	case !st.Reachable:
		return PartAlone
	}
	return PartFollower
}

// startFleet starts what a fleet adds to the hub, until ctx ends: holding
// the lease, and copying the fleet's snapshots to the host. It returns once
// the cluster answered (or settle ended), so that the hub starts in its
// part. settle ends the wait.
func (h *Hub) startFleet(ctx, settle context.Context, wg *sync.WaitGroup) {
	f := &fleetState{cfg: h.Fleet, local: h.shared, restart: make(chan struct{}, 1)}
	h.fleet.Store(f)
	f.part.Store(PartAlone)
	h.Fleet.Lease.OnChange(func(st lease.State) { h.setPart(partOf(st)) })
	wg.Go(func() { h.Fleet.Lease.Hold(ctx) })
	select { // a fleet that starts makes its stores first: give it a moment
	case <-h.Fleet.Lease.Reached():
	case <-settle.Done():
	}
	h.setPart(partOf(h.Fleet.Lease.State()))
	wg.Go(func() {
		h.Fleet.Shared.Follow(ctx, f.restart,
			func(s *Snapshot, first bool) { h.copyIn(ctx, s, first) },
			func(err error) {
				if errors.Is(err, errWatch) {
					h.log.Debug("fleet: watch the fleet's snapshot", "err", err) // the part says why
					return
				}
				h.log.Warn("fleet: snapshot refused", "err", err)
			},
			func() {})
	})
}

// setPart moves the hub to part.
func (h *Hub) setPart(part string) {
	f := h.fs()
	f.partMu.Lock()
	defer f.partMu.Unlock()
	old := f.getPart()
	if old == part {
		return
	}
	f.part.Store(part)
	h.stale.Store(true) // the next fetch reads its target's latest first
	switch part {
	case PartLeader:
		h.log.Info("fleet: this agent reads the remote for every host")
	case PartFollower:
		h.log.Info("fleet: another host's agent reads the remote; this one copies its snapshots")
	case PartAlone:
		h.log.Warn("fleet: the cluster cannot be reached; this agent reads the remote itself")
	}
	if old == PartAlone && f.alone.Load() {
		// What this host read alone may be newer than the fleet's latest, or
		// older: one more check of the remote, published to the fleet, says.
		f.rejoin.Store(true)
		h.request("catchup", false)
	} else if part == PartLeader {
		h.request("catchup", false) // a change may have come while nobody led
	}
	if old == PartAlone {
		f.kick()
	}
	if h.Fleet.OnPart != nil {
		h.Fleet.OnPart(part, h.hostSnapshot())
	}
}

// kick makes the copy start again from the fleet's latest.
func (f *fleetState) kick() {
	select {
	case f.restart <- struct{}{}:
	default:
	}
}

// target is the shared copy the hub publishes to, and whether it reads the
// remote at all: the host's on a single host or alone, the fleet's for the
// leader (and for the check after a rejoin), none for a follower.
func (h *Hub) target() (*Shared, bool) {
	f := h.fs()
	if f == nil {
		return h.shared, true
	}
	switch {
	case f.rejoin.Load():
		return f.cfg.Shared, true
	case f.getPart() == PartLeader:
		return f.cfg.Shared, true
	case f.getPart() == PartAlone:
		return f.local, true
	}
	return f.local, false
}

// published is called after a read of the remote was published (or found
// unchanged) on sh.
func (h *Hub) published(sh *Shared) {
	f := h.fs()
	if f == nil {
		return
	}
	if sh == f.local {
		f.alone.Store(true)
		return
	}
	if f.rejoin.CompareAndSwap(true, false) {
		f.alone.Store(false)
		h.log.Info("fleet: checked the remote after the cluster came back; copying the fleet's snapshots again")
		f.kick()
	}
}

// copyIn copies a snapshot of the fleet to the host's shared copy, unless the
// host has it, or it is older than one copied before, or a check is due.
func (h *Hub) copyIn(ctx context.Context, s *Snapshot, first bool) {
	f := h.fs()
	if f.rejoin.Load() || f.getPart() == PartAlone {
		return // the check after the rejoin copies what it finds (kick)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if s.Revision <= f.copied && !first {
		return
	}
	for attempt := 0; ctx.Err() == nil; attempt++ {
		cur, head, err := f.local.Latest(ctx)
		if err != nil && head.Revision == 0 {
			h.log.Warn("fleet: read this host's snapshot", "err", err)
			return
		}
		if cur != nil && cur.Digest == s.Digest && cur.Version == s.Version {
			f.copied, f.localRev = s.Revision, cur.Revision
			if f.last.Load() == nil {
				f.last.Store(cur.WithBy(cur.By, h.now()))
			}
			f.copies.notify()
			return
		}
		p, err := f.local.Publish(ctx, s, s.By, head)
		if errors.Is(err, ErrConflict) && attempt < 3 {
			continue // a worker published while the agent was away: read again
		}
		if err != nil {
			h.log.Warn("fleet: copy the fleet's snapshot to this host", "err", err, "version", s.Version)
			return
		}
		f.copied, f.localRev = s.Revision, p.Revision
		p = p.WithBy(s.By, h.now())
		f.last.Store(p)
		f.copies.notify()
		if h.Fleet.OnPart != nil {
			h.Fleet.OnPart(f.getPart(), p)
		}
		h.log.Info("fleet: new version from the fleet", "by", s.By, "version", s.Version,
			"fleetRevision", s.Revision, "revision", p.Revision)
		return
	}
}

// localReply makes a reply about the fleet's snapshot after one about the
// host's: a worker waits for the host's revision. A leader's snapshot is the
// fleet's, copied to the host a moment later.
func (h *Hub) localReply(ctx context.Context, r fetchReply) fetchReply {
	f := h.fs()
	if f == nil || f.getPart() == PartAlone || r.Revision == 0 || r.Err != "" {
		return r
	}
	if s := h.store.Load(); s == nil || f.getPart() == PartFollower {
		return r // a follower's snapshot is the host's
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	local, err := f.awaitCopy(ctx, r.Revision)
	if err != nil {
		r.Err = "the fleet's snapshot did not reach this host: " + err.Error()
		return r
	}
	r.Revision = local
	return r
}

// Part returns the agent's part in the fleet's cache, "" on a single host.
func (h *Hub) Part() string {
	f := h.fs()
	if f == nil {
		return ""
	}
	return f.getPart()
}

// fleetSettle bounds how long Run waits for the cluster at start, before it
// goes alone.
const fleetSettle = 3 * time.Second
