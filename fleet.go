package yolk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/lease"
	"github.com/yolkgo/yolk/schedule"
)

// A fleet is several hosts, each a master with its agent and workers, whose
// buses join one NATS cluster (YOLK_CLUSTER_URL; the master's embedded server
// becomes a leaf node of it). Each host stays whole on its own: the verbs of
// the messenger, the schedule runs and the stores of App.Stores are the
// host's. A fleet adds:
//   - stores on the cluster, shared by every host (Store.Fleet);
//   - leases ([Process.Lease]), and Cluster schedules, which run once per
//     tick across the fleet;
//   - SendToFleet and GatherFleet, to every worker of every host.

// LeasesBucket is the fleet's key-value bucket of leases, on the cluster,
// whose entries expire after YOLK_LEASE_TTL.
const LeasesBucket = "yolk-leases"

// ErrNoFleet is returned by the fleet's verbs and stores on a single host
// (YOLK_CLUSTER_URL is empty).
var ErrNoFleet = bus.ErrNoFleet

// Host returns this host's name in the fleet (YOLK_HOST), "" on a single host.
func (p *Process) Host() string { return p.conn.Host() }

// SendToFleet sends event to every worker of every host of the fleet, this
// host's included: SendToApp across hosts, fire-and-forget. Handlers see
// [bus.Message].From as id@host. On a single host it fails with ErrNoFleet.
func (p *Process) SendToFleet(event string, data any) error {
	return p.conn.SendToFleet(event, data)
}

// GatherFleet is Gather across every host of the fleet: a request for event
// to every worker of every host, and their replies (From is id@host), once it
// has want of them or ctx ends. On a single host it fails with ErrNoFleet.
func (p *Process) GatherFleet(ctx context.Context, event string, data any, want int) ([]bus.Message, error) {
	return p.conn.GatherFleet(ctx, event, data, want)
}

// Lease returns this process's side of the fleet-wide lease name (a key of
// LeasesBucket): run its Hold in a [Process.Go] function to take and keep it
// while the process lives; at most one process of the fleet holds it at a
// time, and one that dies loses it within YOLK_LEASE_TTL. The bucket is
// opened when first reached, so a host that starts while the cluster is
// down gets its lease later. On a single host it fails with ErrNoFleet.
func (p *Process) Lease(name string) (*lease.Lease, error) {
	if !p.fleet.On() {
		return nil, fmt.Errorf("yolk: lease %q: %w", name, ErrNoFleet)
	}
	open := func(ctx context.Context) (jetstream.KeyValue, error) { return p.fleetKV(ctx, LeasesBucket) }
	return lease.Open(open, name, bus.FleetID(p.fleet.Host, p.conn.ID()), p.fleet.LeaseTTL), nil
}

// fleetKV opens the fleet's bucket name.
func (p *Process) fleetKV(ctx context.Context, name string) (jetstream.KeyValue, error) {
	js, err := p.conn.FleetJetStream()
	if err != nil {
		return nil, err
	}
	return js.KeyValue(ctx, name)
}

// fleetStore reports whether name is declared as a store of the fleet.
func (p *Process) fleetStore(name string) bool {
	for _, s := range p.stores {
		if s.Name == name {
			return s.Fleet
		}
	}
	return false
}

// clusterRuns guards the runs of the Cluster schedules of the agent of a
// fleet host: one lease per schedule, held while the agent lives, and each
// tick claimed on it before the run is dispatched.
type clusterRuns struct {
	specs  map[string]schedule.Spec
	leases map[string]*lease.Lease
	log    *slog.Logger
}

// leaseOfSchedule is the key of a Cluster schedule's lease.
func leaseOfSchedule(name string) string { return "schedule." + name }

// newClusterRuns makes the leases of the Cluster schedules among specs, held
// by functions added to p's Go functions (after setup, as the runtime's).
// Nil on a single host.
func newClusterRuns(p *Process, specs []schedule.Spec, log *slog.Logger) (*clusterRuns, error) {
	if !p.fleet.On() {
		return nil, nil
	}
	cr := &clusterRuns{specs: map[string]schedule.Spec{}, leases: map[string]*lease.Lease{}, log: log}
	for _, s := range specs {
		if s.Type != schedule.Cluster || s.Disable {
			continue
		}
		l, err := p.Lease(leaseOfSchedule(s.Name))
		if err != nil {
			return nil, err
		}
		name := s.Name
		l.OnChange(func(st lease.State) {
			switch {
			case st.Held:
				log.Info("cluster schedule: this host runs it", "schedule", name, "fence", st.Fence)
			case !st.Reachable:
				log.Warn("cluster schedule: the cluster cannot be reached; no host runs it from here", "schedule", name)
			default:
				log.Info("cluster schedule: another host runs it", "schedule", name, "holder", st.Holder)
			}
		})
		cr.specs[s.Name], cr.leases[s.Name] = s, l
		p.mu.Lock()
		p.runs = append(p.runs, func(ctx context.Context) error { l.Hold(ctx); return nil })
		p.mu.Unlock()
	}
	return cr, nil
}

// claim claims r's tick for this host and sets its fencing token; false when
// another host runs it, or nobody can (the cluster is unreachable).
func (cr *clusterRuns) claim(ctx context.Context, r *schedule.Run) bool {
	l := cr.leases[r.Name]
	if l == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	fence, err := l.Claim(ctx, cr.specs[r.Name].Tick(r.At))
	switch {
	case err == nil:
		r.Fence = fence
		return true
	case errors.Is(err, lease.ErrNotHeld) && l.State().Reachable:
		cr.log.Debug("cluster schedule run: another host's", "schedule", r.Name, "seq", r.Seq)
	default:
		cr.log.Warn("cluster schedule run not claimed", "schedule", r.Name, "seq", r.Seq, "err", err)
	}
	return false
}
