package master

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/broker"
	"github.com/yolkgo/yolk/internal/cli"
	"github.com/yolkgo/yolk/internal/masterapi"
	"github.com/yolkgo/yolk/supervisor"
)

// serveExternal runs the master of external mode until ctx is cancelled: it starts
// no process and opens no HTTP port. It serves the bus to the agent and workers
// the platform starts, admits each role by its secret, and tracks who is ready:
// a process is a member from its "ready" event (its role from its credential)
// until its connection closes. Agents and workers reconnect after a restart of
// the master and send "ready" again, so a new master learns them within seconds.
func serveExternal(ctx context.Context, cfg config, stderr io.Writer, sig signals) error {
	begin := time.Now()
	id := strconv.Itoa(os.Getpid())
	if err := cfg.secrets(); err != nil {
		return err
	}
	log, err := cfg.NewLogger(stderr, slog.String("proc", "master"))
	if err != nil {
		return err
	}
	state, err := claimRunDir(cfg.RunDir)
	if err != nil {
		return err
	}
	defer state.remove()

	members := newMembers(log)
	b, conn, err := startBus(ctx, cfg, id, log, broker.Config{
		Roles:        map[bus.Role]string{bus.RoleAgent: cfg.AgentSecret, bus.RoleWorker: cfg.WorkerSecret},
		OnDisconnect: members.left,
		Stores:       cfg.stores,
	})
	if err != nil {
		return err
	}
	defer b.Shutdown()
	defer conn.Close()

	// The members with the agent's row when it is missing: external mode
	// cannot restart it, and the platform may not (a `docker kill` is a
	// manual stop for Docker).
	children := func() []processStatus { return withMissing(members.list()) }
	mdl := newModel(children)
	sm := newServiceMetrics(conn, members.list, false, log)
	mdl.onComplete, mdl.onFetches = sm.changeComplete, sm.changeCounted
	var everReady atomic.Bool
	// now is the master's own state and the service's health: starting until
	// the service was first ready, degraded when it no longer is.
	now := func() (self, hlth string) {
		err := readiness(members.list())
		switch {
		case err == nil:
			return supervisor.StateReady, health(children())
		case everReady.Load():
			return stateDegraded, health(children())
		default:
			return supervisor.StateStarting, "starting: " + err.Error()
		}
	}
	view := func() statusReply {
		st, h := now()
		return mdl.view(selfStatus(id, begin, st), statusReply{Mode: cli.ModeExternal, Bus: b.ClientURL(),
			Health: h, Fleet: fleetState(ctx, cfg, b, conn)})
	}
	adm, err := newAdmin(ctx, cfg, view, mdl.subscribe, log)
	if err != nil {
		return err
	}
	defer adm.Close()
	adm.Handle("GET /metrics", sm)
	var serviceReady atomic.Bool
	wire := newWireGate(conn)
	handlers := map[string]bus.Handler{
		masterapi.EventReady: func(_ context.Context, m bus.Message) (any, error) {
			w, err := wire.admit(m)
			if err != nil {
				log.Error("refused a member's ready report", "id", m.From, "err", err)
				return nil, err
			}
			if err := members.joined(m.From, b.Connected); err != nil {
				return nil, err
			}
			return masterapi.ReadyReply{ServiceReady: serviceReady.Load(), Wire: w}, nil
		},
		masterapi.EventState: mdl.handleState,
		"status":             func(context.Context, bus.Message) (any, error) { return view(), nil },
		"reload": func(context.Context, bus.Message) (any, error) {
			return nil, errors.New("no reload in external mode: the platform replaces the workers (a rolling update)")
		},
	}
	for event, h := range handlers { // what the children and the control command send the master
		if err := conn.OnMaster(event, h); err != nil {
			return err
		}
	}

	// Alive says how the service is, and stays 200 when it is degraded: the
	// agent's container waits for the master's to be healthy before it starts
	// (compose's depends_on), so a master unhealthy for want of an agent would
	// keep the agent from coming back.
	stopHealth, err := cfg.StartHealthChecks(cli.HealthChecks{
		Ready: func() error { return readiness(members.list()) },
		Note:  func() string { _, h := now(); return h },
	}, log)
	if err != nil {
		return err
	}
	defer stopHealth()

	ctl := b.Mint(bus.RoleControl, "ctl")
	if err := state.write(stateFile{
		PID: os.Getpid(), Bus: b.ClientURL(), User: ctl.User, Secret: ctl.Password, Admin: adm.Addr(), Started: begin,
	}); err != nil {
		return err
	}
	// the heartbeats end before the bus connection closes (defers run last first)
	var beats sync.WaitGroup
	defer beats.Wait()
	bctx, stopBeats := context.WithCancel(ctx)
	defer stopBeats()
	beats.Go(func() { mdl.heartbeats(bctx, pingOver(conn), heartbeatInterval(cfg.HangTimeout), log) })
	log.Info("master started", "version", version, "mode", cli.ModeExternal, "bus", b.ClientURL(),
		"health", cfg.HealthPath(), "admin", adm.Addr(), "runDir", cfg.RunDir)

	var wasReady bool
	for {
		select {
		case <-ctx.Done():
			log.Info("stopped cleanly")
			return nil
		case <-sig.kill:
			log.Warn("second signal: stopping now")
			return nil
		case <-sig.reload:
			log.Warn("SIGHUP ignored: no reload in external mode; the platform replaces the workers")
		case <-members.changed:
			err := readiness(members.list())
			switch ready := err == nil; {
			case ready && !wasReady:
				log.Info("yolk ready", "workers", members.count("worker"), "startup", time.Since(begin).Round(time.Millisecond).String())
				if err := conn.Broadcast(masterapi.EventServiceReady, nil); err != nil {
					log.Error("broadcast yolk-ready", "err", err)
				}
			case !ready && wasReady:
				log.Warn("yolk not ready", "why", err.Error())
			}
			wasReady = err == nil
			serviceReady.Store(wasReady)
			if wasReady {
				everReady.Store(true)
			}
			mdl.changed()
		}
	}
}

// members is external mode's membership: the agent and the workers that said
// they are ready and are still connected. Safe for concurrent use.
type members struct {
	log     *slog.Logger
	changed chan struct{} // signalled (without blocking) at each join and leave

	mu   sync.Mutex
	byID map[string]member
}

type member struct {
	role  bus.Role
	since time.Time // when it (last) said it was ready
	slot  int       // a worker's: the lowest free when it joined, kept while it stays
}

func newMembers(log *slog.Logger) *members {
	return &members{log: log, changed: make(chan struct{}, 1), byID: make(map[string]member)}
}

// joined records a process's ready event. connected gives its role as its
// credential says; a process not connected (it left while its message was on
// the way) is not recorded. Lookup and record happen under one lock, and the
// broker forgets a connection before it calls left, so a process that leaves
// is never recorded after its departure.
func (ms *members) joined(id string, connected func(string) (bus.Role, bool)) error {
	ms.mu.Lock()
	role, ok := connected(id)
	switch {
	case !ok:
		ms.mu.Unlock()
		return fmt.Errorf("ready from %q: not connected, or claimed by processes of two roles", id)
	case role != bus.RoleAgent && role != bus.RoleWorker:
		ms.mu.Unlock()
		return fmt.Errorf("ready from %q: a %s is not a member", id, role)
	}
	m, again := ms.byID[id]
	if !again || m.role != role {
		m = member{role: role, since: time.Now()}
		if role == bus.RoleWorker {
			m.slot = ms.freeSlot(id)
		}
		ms.byID[id] = m
	}
	ms.mu.Unlock()
	if !again {
		ms.log.Info("member ready", "role", string(role), "member", id)
		ms.signal()
	}
	return nil
}

// left forgets a process whose connection closed: broker.Config.OnDisconnect.
func (ms *members) left(role bus.Role, id string) {
	ms.mu.Lock()
	m, ok := ms.byID[id]
	if ok && m.role == role {
		delete(ms.byID, id)
	}
	ms.mu.Unlock()
	if ok && m.role == role {
		ms.log.Warn("member left", "role", string(role), "member", id,
			"uptime", time.Since(m.since).Round(time.Millisecond).String())
		ms.signal()
	}
}

// freeSlot is the lowest worker slot no member but id holds. The caller
// holds ms.mu.
func (ms *members) freeSlot(id string) int {
	taken := make(map[int]bool, len(ms.byID))
	for other, m := range ms.byID {
		if other != id && m.role == bus.RoleWorker {
			taken[m.slot] = true
		}
	}
	slot := 0
	for taken[slot] {
		slot++
	}
	return slot
}

func (ms *members) signal() {
	select {
	case ms.changed <- struct{}{}:
	default:
	}
}

// list returns the members as status rows: the agent first, then the workers
// by age; started is when each said it was ready. A worker's slot is the
// lowest that was free when it joined, and it keeps it until it leaves: the
// status page and the metrics' slot label both read it.
func (ms *members) list() []processStatus {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	out := make([]processStatus, 0, len(ms.byID))
	for id, m := range ms.byID {
		out = append(out, processStatus{Role: string(m.role), ID: id, Slot: m.slot, State: supervisor.StateReady, Started: m.since})
	}
	slices.SortFunc(out, func(a, b processStatus) int {
		return cmp.Or(cmp.Compare(roleOrder(a.Role), roleOrder(b.Role)), a.Started.Compare(b.Started), cmp.Compare(a.ID, b.ID))
	})
	return out
}

func (ms *members) count(role string) int {
	n := 0
	for _, p := range ms.list() {
		if p.Role == role {
			n++
		}
	}
	return n
}

func roleOrder(role string) int {
	if role == string(bus.RoleAgent) {
		return 0
	}
	return 1
}
