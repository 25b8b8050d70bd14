package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/yolkgo/yolk/bus"
)

// Replica is a worker's half of the refresh protocol: it keeps the worker's Store
// at the service's newest snapshot, takes refresh events, runs the pull and force
// tasks through the agent, and catches up after a start or a reconnect.
type Replica struct {
	conn    Messenger
	src     Source // read only when the agent cannot be reached
	store   *Store
	metrics *Metrics
	log     *slog.Logger

	// OnUpdate, if set, is called after each new snapshot is installed.
	OnUpdate func(*Snapshot)

	catchup chan struct{}
}

// NewReplica returns a replica that keeps store fresh. Run starts it.
func NewReplica(conn Messenger, src Source, store *Store, m *Metrics, log *slog.Logger) *Replica {
	return &Replica{conn: conn, src: src, store: store, metrics: m, log: log, catchup: make(chan struct{}, 1)}
}

// Run registers the replica's handlers, warms the store (from the agent, or from
// the remote when the agent does not answer), calls ready, and then catches up
// whenever Reconnected is called, until ctx is done.
func (r *Replica) Run(ctx context.Context, ready func()) error {
	for event, h := range map[string]bus.Handler{
		EventRefresh:  r.handleRefresh,
		EventSnapshot: serveChunks(r.store),
		EventVersion:  serveVersion(r.store),
	} {
		if err := r.conn.On(event, h); err != nil {
			return err
		}
	}
	wait := 100 * time.Millisecond
	for r.store.Load() == nil {
		if err := r.catchUp(ctx, "start"); err != nil {
			r.log.Warn("waiting for the first snapshot", "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
			wait = min(2*wait, 500*time.Millisecond) // asking the agent is cheap; not being ready is not
		}
	}
	ready()
	var retry <-chan time.Time
	wait = 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.catchup:
		case <-retry:
		}
		retry = nil
		if err := r.catchUp(ctx, "catchup"); err != nil {
			r.log.Warn("catch up with the agent; retrying", "err", err, "retryIn", wait.String())
			retry = time.After(wait)
			wait = min(2*wait, 5*time.Second)
			continue
		}
		wait = 100 * time.Millisecond
	}
}

// Reconnected asks Run to catch up with the agent (until it succeeds): refresh
// events sent while this worker was away from the bus, or dropped by it as a slow
// consumer, are lost. Safe to call from any goroutine.
func (r *Replica) Reconnected() {
	select {
	case r.catchup <- struct{}{}:
	default:
	}
}

// catchUp copies the agent's snapshot if it differs from ours; when the agent
// cannot be reached and we have nothing, it reads the remote.
func (r *Replica) catchUp(ctx context.Context, by string) error {
	have := ""
	if s := r.store.Load(); s != nil {
		have = s.Version
	}
	s, err := copyFrom(ctx, askAgent(r.conn), "agent", have)
	switch {
	case err == nil && s == nil:
		return nil // already current
	case err == nil:
		r.install(s, by, "agent")
		return nil
	case errors.Is(err, errNoSnapshot):
		return errors.New("cache: the agent has no snapshot yet")
	case r.store.Load() != nil:
		return err
	}
	r.log.Warn("agent unreachable; reading the remote", "err", err)
	s, err = r.src.Fetch(ctx)
	r.metrics.Fetch(err)
	if err != nil {
		return err
	}
	r.install(s, by, "remote")
	return nil
}

// install swaps s in (if newer) and logs it as egg's example does.
func (r *Replica) install(s *Snapshot, by, via string) bool {
	s = s.WithBy(by, time.Now())
	if !r.store.Swap(s) {
		return false
	}
	r.metrics.Refresh(by)
	r.metrics.SetSnapshot(s)
	r.log.Info("update memory cache from remote", "by", by, "version", s.Version, "via", via, "items", len(s.Items))
	if r.OnUpdate != nil {
		r.OnUpdate(s)
	}
	return true
}

func (r *Replica) handleRefresh(ctx context.Context, m bus.Message) (any, error) {
	r.metrics.BusMessage(EventRefresh)
	ev, err := decodeRefresh(m.Data)
	if err != nil {
		return nil, fmt.Errorf("cache: bad refresh event from %s: %w", m.From, err)
	}
	have := r.store.Load()
	if stale(ev, have) {
		r.log.Debug("refresh: nothing newer", "by", ev.By, "version", ev.Version)
		return nil, nil
	}
	r.log.Info("start update by "+ev.By, "by", ev.By, "version", ev.Version, "from", m.From)
	s, err := receive(ctx, r.conn, ev, have)
	if err != nil {
		r.Reconnected() // catch up from the agent instead, until it works
		return nil, fmt.Errorf("cache: refresh to %s: %w; catching up from the agent", ev.Version, err)
	}
	if s != nil {
		via := "bus"
		if len(ev.Snapshot) == 0 {
			via = "copied from " + ev.Holder
		}
		r.install(s, ev.By, via)
	}
	return nil, nil
}

// Pull is the pull_refresh task: ask the agent to check the remote and, when it
// changed, tell every worker to refresh. When the agent cannot be reached, this
// worker checks the remote itself.
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
	if rep.Err != "" {
		r.metrics.Fetch(errors.New(rep.Err))
		return fmt.Errorf("cache: the agent could not read the remote: %s", rep.Err)
	}
	if req.By == "pull" && rep.Version != "" {
		// As in egg's example: the worker that checked tells every worker. The
		// agent has already sent them any new data, so this hint costs a worker
		// that has the version nothing, and heals one that missed it.
		if err := r.conn.SendToApp(EventRefresh, Refresh{By: "pull", Version: rep.Version, Holder: m.From}); err != nil {
			return err
		}
	}
	if s := r.store.Load(); s != nil && s.Version == rep.Version {
		return nil
	}
	s, err := copyFrom(ctx, askProcess(r.conn, m.From), m.From, currentVersion(r.store))
	if err != nil || s == nil {
		return err
	}
	r.install(s, req.By, "agent")
	return nil
}

// fetchRemote reads the remote directly (the agent is away) and shares the result
// with the other workers.
func (r *Replica) fetchRemote(ctx context.Context, by string) error {
	var s *Snapshot
	var err error
	if cur := r.store.Load(); cur != nil && by != "force" {
		s, err = r.src.Check(ctx, cur.Version)
	} else {
		s, err = r.src.Fetch(ctx)
	}
	if errors.Is(err, ErrNotModified) {
		return nil
	}
	r.metrics.Fetch(err)
	if err != nil {
		return err
	}
	if !r.install(s, by, "remote") {
		return nil
	}
	// The agent is away; when it returns it copies the newest snapshot the
	// workers hold, this one included.
	return r.conn.SendToApp(EventRefresh, announce(r.store.Load(), by, r.conn.ID()))
}

func currentVersion(st *Store) string {
	if s := st.Load(); s != nil {
		return s.Version
	}
	return ""
}
