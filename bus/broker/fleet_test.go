package broker_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/broker"
	"github.com/yolkgo/yolk/bus/bustest"
)

// fleetHost starts a broker of host joined to c, with a local bucket "local"
// and a fleet bucket "shared", and waits until the fleet's stores are made.
func fleetHost(t *testing.T, c *bustest.Cluster, host string) *broker.Broker {
	t.Helper()
	b := bustest.NewBrokerWith(t, broker.Config{
		Stores: []broker.Store{{Name: "local"}},
		Fleet: &broker.Fleet{URLs: []*url.URL{c.LeafURL}, Domain: bustest.ClusterDomain, Host: host,
			Stores: []broker.Store{{Name: "shared"}}},
	})
	waitFor(t, 10*time.Second, "the fleet's stores on "+host, b.FleetStores)
	if !b.FleetLink() {
		t.Fatal("FleetLink is false with the stores made")
	}
	return b
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Two hosts of a fleet: the fleet's verbs and stores cross the leaf link,
// the host's own subjects and stores do not, whatever a process publishes.
func TestFleetCrossesOnlyFleetSubjects(t *testing.T) {
	c := bustest.NewCluster(t)
	h0, h1 := fleetHost(t, c, "h0"), fleetHost(t, c, "h1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	w0 := bustest.DialHost(t, h0, bus.RoleWorker, "11", "h0", bustest.ClusterDomain)
	w1 := bustest.DialHost(t, h1, bus.RoleWorker, "11", "h1", bustest.ClusterDomain)
	a1 := bustest.DialHost(t, h1, bus.RoleAgent, "10", "h1", bustest.ClusterDomain)
	got := make(chan bus.Message, 16)
	for _, w := range []*bus.Conn{w0, w1} {
		w.On("hello", func(_ context.Context, m bus.Message) (any, error) {
			got <- m
			return "hi from " + w.Host(), nil
		})
		w.On("local", func(_ context.Context, m bus.Message) (any, error) {
			got <- m
			return nil, nil
		})
	}

	// GatherFleet from h1's agent reaches both hosts' workers, signed id@host.
	var replies []bus.Message
	waitFor(t, 10*time.Second, "a gather that reaches both hosts", func() bool {
		gctx, gcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer gcancel()
		replies, _ = a1.GatherFleet(gctx, "hello", "x", 2)
		return len(replies) == 2
	})
	froms := map[string]bool{}
	for _, r := range replies {
		froms[r.From] = true
	}
	if !froms["11@h0"] || !froms["11@h1"] {
		t.Errorf("gather replies from %v, want 11@h0 and 11@h1", froms)
	}
	for len(got) > 0 {
		if m := <-got; m.From != "10@h1" {
			t.Errorf("a worker saw the gather from %q, want 10@h1", m.From)
		}
	}

	// SendToApp stays on h1, and so does a raw publish on a host subject.
	if err := a1.SendToApp("local", nil); err != nil {
		t.Fatal(err)
	}
	if err := a1.SendToFleet("hello", nil); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for seen["hello"] < 2 {
		select {
		case m := <-got:
			seen[m.Event+"@"+m.From]++
			seen[m.Event]++
		case <-ctx.Done():
			t.Fatalf("SendToFleet: %v", seen)
		}
	}
	hub, err := nats.Connect(c.ClientURL)
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	crossed := make(chan string, 16)
	hub.Subscribe(">", func(m *nats.Msg) { crossed <- m.Subject })
	hub.Flush()
	waitFor(t, 5*time.Second, "the hub's interest at h1", func() bool {
		return a1.SendToFleet("probe", nil) == nil && func() bool {
			select {
			case s := <-crossed:
				return s == "yolk-fleet.app.probe.10@h1"
			case <-time.After(100 * time.Millisecond):
				return false
			}
		}()
	})
	if err := a1.SendToApp("local", nil); err != nil {
		t.Fatal(err)
	}
	if err := a1.Broadcast("local", nil); err != nil {
		t.Fatal(err)
	}
	if err := a1.SendToFleet("marker", nil); err != nil {
		t.Fatal(err)
	}
	for s := ""; s != "yolk-fleet.app.marker.10@h1"; {
		select {
		case s = <-crossed:
			if s != "yolk-fleet.app.marker.10@h1" && s != "yolk-fleet.app.probe.10@h1" {
				t.Errorf("crossed the leaf link: %s", s)
			}
		case <-ctx.Done():
			t.Fatal("the marker did not cross")
		}
	}

	// The fleet's bucket is the cluster's, shared by both hosts; the host's
	// bucket of the same kind stays its own.
	js1, err := a1.FleetJetStream()
	if err != nil {
		t.Fatal(err)
	}
	kv1, err := js1.KeyValue(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv1.Put(ctx, "k", []byte("from h1")); err != nil {
		t.Fatal(err)
	}
	js0, _ := w0.FleetJetStream()
	kv0, err := js0.KeyValue(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv0.Get(ctx, "k"); err != nil || string(e.Value()) != "from h1" {
		t.Errorf("h0 reads the fleet's bucket: %v %v", e, err)
	}
	refused, rcancel := context.WithTimeout(ctx, time.Second) // a refused request times out
	defer rcancel()
	if _, err := js0.CreateKeyValue(refused, jetstream.KeyValueConfig{Bucket: "mine"}); err == nil {
		t.Error("a worker made a bucket on the cluster")
	}
	local1, _ := a1.JetStream()
	lkv1, err := local1.KeyValue(ctx, "local")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lkv1.Put(ctx, "k", []byte("h1 only")); err != nil {
		t.Fatal(err)
	}
	local0, _ := w0.JetStream()
	lkv0, _ := local0.KeyValue(ctx, "local")
	if e, err := lkv0.Get(ctx, "k"); err == nil {
		t.Errorf("h0's own bucket holds h1's entry %q", e.Value())
	}
}

// A process of one host can neither sign as a process of another host, nor
// read another's fleet inbox, nor reach the cluster's JetStream beyond the
// fleet's stores.
func TestFleetPermissionsPinTheHost(t *testing.T) {
	c := bustest.NewCluster(t)
	h1 := fleetHost(t, c, "h1")
	cred := h1.Mint(bus.RoleWorker, "11")
	errs := make(chan error, 16)
	nc, err := nats.Connect(h1.ClientURL(), nats.UserInfo(cred.User, cred.Password), nats.Name("11"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	refused := func(what string, do func() error) {
		t.Helper()
		if err := do(); err != nil {
			return // refused at once
		}
		nc.Flush()
		select {
		case err := <-errs:
			if !strings.Contains(err.Error(), "Permissions Violation") {
				t.Errorf("%s: %v, want a permissions violation", what, err)
			}
		case <-time.After(2 * time.Second):
			t.Errorf("%s: allowed", what)
		}
	}
	refused("sign as h0's worker", func() error { return nc.Publish("yolk-fleet.app.x.11@h0", []byte("{}")) })
	refused("sign as h1's other worker", func() error { return nc.Publish("yolk-fleet.app.x.12@h1", []byte("{}")) })
	refused("read h0's fleet inbox", func() error { _, err := nc.SubscribeSync("yolk-fleet.inbox.h0.11.>"); return err })
	refused("read h1's agent's fleet inbox", func() error { _, err := nc.SubscribeSync("yolk-fleet.inbox.h1.10.>"); return err })
	refused("manage the cluster's streams", func() error { return nc.Publish("$JS.fleet.API.STREAM.DELETE.KV_shared", nil) })
	refused("another bucket of the cluster", func() error { return nc.Publish("$JS.fleet.API.STREAM.INFO.KV_other", nil) })
	if err := nc.Publish("yolk-fleet.app.x.11@h1", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	select {
	case err := <-errs:
		t.Errorf("signing as itself refused: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
}
