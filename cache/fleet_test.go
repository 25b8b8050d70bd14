package cache

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/broker"
	"github.com/yolkgo/yolk/bus/bustest"
	"github.com/yolkgo/yolk/lease"
)

// fleetTTL is the cache lease's TTL in these tests.
const fleetTTL = time.Second

// testFleet is hosts joined to one cluster, each a testCluster (an agent's
// hub and workers) on one remote.
type testFleet struct {
	t       *testing.T
	cluster *bustest.Cluster
	remote  *fakeSource
	hosts   []*testCluster
	names   []string
}

// startFleet starts n hosts h0..h(n-1) with 2 workers each, on a remote
// serving a small v1, and waits until every worker holds it.
func startFleet(t *testing.T, n int) *testFleet {
	t.Helper()
	f := &testFleet{t: t, cluster: bustest.NewCluster(t), remote: newFakeSource("v1", smallBody("v1"))}
	for i := range n {
		f.startHost(fmt.Sprintf("h%d", i))
	}
	f.converge("v1")
	return f
}

// startHost starts host name: its broker joined to the cluster, its hub and
// two workers.
func (f *testFleet) startHost(name string) *testCluster {
	t := f.t
	t.Helper()
	fleet := &broker.Fleet{URLs: []*url.URL{f.cluster.LeafURL}, Domain: bustest.ClusterDomain, Host: name,
		Stores: []broker.Store{{Name: "yolk-leases", TTL: fleetTTL}, {Name: FleetBucket}, {Name: FleetObjectStore, Objects: true}}}
	b := bustest.NewBrokerWith(t, broker.Config{Stores: []broker.Store{{Name: Bucket}, {Name: ObjectStore, Objects: true}}, Fleet: fleet})
	c := &testCluster{t: t, broker: b, remote: f.remote, startWithin: patience}
	c.agent = bustest.DialHost(t, b, bus.RoleAgent, "a1", name, bustest.ClusterDomain)
	c.hub = NewHub(c.agent, f.remote.as("hub-"+name), bustest.Logger(t))
	js := func(ctx context.Context) (jetstream.JetStream, error) { return c.agent.FleetJetStream() }
	leases := func(ctx context.Context) (jetstream.KeyValue, error) {
		j, err := js(ctx)
		if err != nil {
			return nil, err
		}
		return j.KeyValue(ctx, "yolk-leases")
	}
	c.hub.Fleet = &Fleet{
		Shared: OpenShared(func(ctx context.Context) (jetstream.KeyValue, jetstream.ObjectStore, error) {
			j, err := js(ctx)
			if err != nil {
				return nil, nil, err
			}
			kv, err := j.KeyValue(ctx, FleetBucket)
			if err != nil {
				return nil, nil, err
			}
			obj, err := j.ObjectStore(ctx, FleetObjectStore)
			return kv, obj, err
		}),
		Lease: lease.Open(leases, FleetLease, bus.FleetID(name, "a1"), fleetTTL),
	}
	sh := c.shared(c.agent)
	run := func(ctx context.Context, ready func()) error { return c.hub.Run(ctx, sh, ready) }
	receiveWithin(t, runInBackground(t, "Hub "+name, run), 2*patience, "Hub ready on "+name)
	var conns []*bus.Conn
	for _, id := range []string{"w1", "w2"} {
		conns = append(conns, bustest.DialHost(t, b, bus.RoleWorker, id, name, bustest.ClusterDomain))
	}
	c.startReplicas(conns...)
	f.hosts, f.names = append(f.hosts, c), append(f.names, name)
	return c
}

// converge waits until every worker of every host serves version.
func (f *testFleet) converge(version string) {
	f.t.Helper()
	body := smallBody(version)
	eventually(f.t, 3*patience, func() error {
		for i, h := range f.hosts {
			hub := h.hub
			h.hub = nil // the workers serve; a follower's hub may hold an older view
			err := h.holding(version, body)()
			h.hub = hub
			if err != nil {
				return fmt.Errorf("%s: %w", f.names[i], err)
			}
		}
		return nil
	})
}

// parts returns each host's part, by host.
func (f *testFleet) parts() map[string]string {
	out := map[string]string{}
	for i, h := range f.hosts {
		out[f.names[i]] = h.hub.Part()
	}
	return out
}

// leader returns the index of the one leader; it fails the test if there are more.
func (f *testFleet) leader() int {
	f.t.Helper()
	who := -1
	for i, h := range f.hosts {
		if h.hub.Part() == PartLeader {
			if who >= 0 {
				f.t.Fatalf("two leaders: %v", f.parts())
			}
			who = i
		}
	}
	return who
}

// change makes the remote serve version and tells every hub, as the change
// feed does.
func (f *testFleet) change(version string) {
	f.remote.set(version, smallBody(version))
	for _, h := range f.hosts {
		h.hub.Changed(version)
	}
}

// Three hosts make one read of the remote per change between them, and every
// worker of every host serves each change.
func TestFleetOneReadPerChange(t *testing.T) {
	f := startFleet(t, 3)
	eventually(t, patience, func() error {
		if f.leader() < 0 {
			return fmt.Errorf("no leader: %v", f.parts())
		}
		return nil
	})
	mark := f.remote.mark()
	const changes = 20
	for i := 2; i <= changes+1; i++ {
		v := fmt.Sprintf("v%d", i)
		f.change(v)
		f.converge(v)
	}
	reads := f.remote.since(mark)
	if len(reads) != changes {
		t.Errorf("%d reads of the remote for %d changes, want one each: %v", len(reads), changes, reads)
	}
	lead := "hub-" + f.names[f.leader()]
	for _, r := range reads {
		if r.who != lead {
			t.Errorf("read by %s, want only the leader %s", r.who, lead)
		}
	}
}

// The leader's host goes (its bus with it): another host's agent takes the
// lease within its TTL and the next change reaches every remaining worker.
func TestFleetLeaderGoes(t *testing.T) {
	f := startFleet(t, 3)
	eventually(t, patience, func() error {
		if f.leader() < 0 {
			return fmt.Errorf("no leader: %v", f.parts())
		}
		return nil
	})
	gone := f.leader()
	f.hosts[gone].broker.Shutdown()
	start := time.Now()
	f.hosts = append(f.hosts[:gone:gone], f.hosts[gone+1:]...)
	f.names = append(f.names[:gone:gone], f.names[gone+1:]...)
	eventually(t, fleetTTL+patience, func() error {
		if f.leader() < 0 {
			return fmt.Errorf("no leader: %v", f.parts())
		}
		return nil
	})
	if took := time.Since(start); took > fleetTTL+time.Second {
		t.Errorf("a new leader after %v, want within the TTL %v and a try", took, fleetTTL)
	}
	mark := f.remote.mark()
	f.change("v2")
	f.converge("v2")
	if reads := f.remote.since(mark); len(reads) > 2 { // the change, and maybe the new leader's catch-up check
		t.Errorf("%d reads for one change after the takeover: %v", len(reads), reads)
	}
}

// With the cluster down every host reads the remote itself and keeps
// serving; when it is back they take the fleet's snapshots again, one read
// per change, and no worker goes back to older data on the way.
func TestFleetClusterDownAndBack(t *testing.T) {
	f := startFleet(t, 2)
	for _, h := range f.hosts {
		h.onUpdate = nil
	}
	f.cluster.Stop()
	eventually(t, patience, func() error {
		for name, part := range f.parts() {
			if part != PartAlone {
				return fmt.Errorf("%s is %s", name, part)
			}
		}
		return nil
	})
	mark := f.remote.mark()
	f.change("v2")
	f.converge("v2")
	if reads := f.remote.since(mark); len(reads) != len(f.hosts) {
		t.Errorf("alone, %d reads for one change, want one per host: %v", len(reads), reads)
	}

	rejoin := f.remote.mark()
	f.cluster.Start()
	eventually(t, 3*patience, func() error {
		if f.leader() < 0 {
			return fmt.Errorf("no leader: %v", f.parts())
		}
		for name, part := range f.parts() {
			if part == PartAlone {
				return fmt.Errorf("%s is still alone", name)
			}
		}
		return nil
	})
	f.converge("v2")
	// Each host read alone: each checks the remote once as it rejoins.
	eventually(t, patience, func() error {
		for i, h := range f.hosts {
			if h.hub.fs().rejoin.Load() || h.hub.fs().alone.Load() {
				return fmt.Errorf("%s has not checked the remote since it rejoined", f.names[i])
			}
		}
		return nil
	})
	for i := 3; i <= 6; i++ {
		v := fmt.Sprintf("v%d", i)
		f.change(v)
		f.converge(v)
	}
	// And each new leader may check once as it takes the lease (a change may
	// have come while nobody led): as the cluster comes back the lease may
	// move twice, from the first host to win it to the other (seen under
	// -race on a loaded machine, with the test's short TTL).
	if reads := f.remote.since(rejoin); len(reads) < len(f.hosts)+4 || len(reads) > len(f.hosts)+4+2 {
		t.Errorf("back in the fleet, %d reads, want one per host as it rejoined, at most two as leaders took over, and one per change (4): %v", len(reads), reads)
	}
}
