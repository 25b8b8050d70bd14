package fleetrig

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startCluster starts a 3-node cluster on free ports and stops it when the test
// ends, printing its log if the test failed.
func startCluster(t *testing.T) (*Cluster, *syncBuffer) {
	t.Helper()
	nodes, err := FreeNodes(3)
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	c, err := New(Config{Binary: natsServer, Dir: t.TempDir(), Nodes: nodes, LeafPassword: "s3cret", Log: NewLog(&out)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
		if t.Failed() {
			t.Logf("cluster log:\n%s", out.String())
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	start := time.Now()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("3 nodes up with a JetStream meta leader in %v", time.Since(start).Round(time.Millisecond))
	return c, &out
}

// kv opens (creating it if need be) a bucket replicated on the 3 nodes, through
// url, in the cluster's domain.
func kv(ctx context.Context, t *testing.T, url string) jetstream.KeyValue {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.NewWithDomain(nc, DefaultDomain)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "rig", Replicas: 3, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatalf("create bucket through %s: %v", url, err)
	}
	return kv
}

func TestClusterServesJetStreamAcrossARestart(t *testing.T) {
	c, _ := startCluster(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	k0 := kv(ctx, t, c.Nodes[0].ClientURL())
	if _, err := k0.Put(ctx, "k", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	// Through another node, the same bucket.
	if e, err := kv(ctx, t, c.Nodes[2].ClientURL()).Get(ctx, "k"); err != nil || string(e.Value()) != "v1" {
		t.Fatalf("Get through n2 = %v, %v; want v1", e, err)
	}

	// Kill one node: the other two keep a quorum.
	n1 := c.Nodes[1]
	if err := n1.Kill(); err != nil {
		t.Fatal(err)
	}
	var exit *exec.ExitError
	if !errors.As(n1.Err(), &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("n1 ended with %v, want killed by SIGKILL", n1.Err())
	}
	if err := c.WaitJetStream(ctx); err != nil {
		t.Fatalf("JetStream with n1 down: %v", err)
	}
	if err := poll(ctx, "put with n1 down", nil, func() error {
		_, err := k0.Put(ctx, "k", []byte("v2"))
		return err
	}); err != nil {
		t.Fatal(err)
	}

	// Start it again: same store, same cluster; it answers through its own port.
	if err := n1.Start(); err != nil {
		t.Fatal(err)
	}
	if err := n1.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	k1 := kv(ctx, t, n1.ClientURL())
	if err := poll(ctx, "get through the restarted n1", nil, func() error {
		e, err := k1.Get(ctx, "k")
		if err == nil && string(e.Value()) != "v2" {
			err = fmt.Errorf("value %q, want v2", e.Value())
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}

	// A graceful restart (SIGTERM) exits 0.
	if err := c.Nodes[2].Restart(ctx); err != nil {
		t.Fatalf("Restart n2: %v", err)
	}
	if err := c.Nodes[2].Err(); err != nil {
		t.Errorf("n2 ended with %v after SIGTERM, want exit 0", err)
	}
	if c.Nodes[2].Starts() != 2 {
		t.Errorf("n2 started %d times, want 2", c.Nodes[2].Starts())
	}
}

func TestNewRejectsAnIncompleteConfig(t *testing.T) {
	nodes := DefaultNodes()
	for _, cfg := range []Config{
		{Dir: t.TempDir(), Nodes: nodes, LeafPassword: "p"},
		{Binary: natsServer, Nodes: nodes, LeafPassword: "p"},
		{Binary: natsServer, Dir: t.TempDir(), LeafPassword: "p"},
		{Binary: natsServer, Dir: t.TempDir(), Nodes: nodes},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) = nil error, want one", cfg)
		}
	}
}

func TestNodeConfigIsValid(t *testing.T) {
	cfg := Config{Binary: natsServer, Dir: t.TempDir(), Nodes: DefaultNodes(), LeafPassword: `pa"ss`}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		out, err := exec.CommandContext(t.Context(), natsServer, "-c", n.ConfigFile, "-t").CombinedOutput()
		if err != nil {
			t.Errorf("nats-server -t -c %s: %v\n%s", n.ConfigFile, err, out)
		}
	}
	conf := NodeConfig(c.Config(), DefaultNodes()[1], "/store")
	for _, want := range []string{"server_name: n1", "listen: 127.0.0.1:4251", "domain: fleet", `store_dir: "/store"`,
		"name: yolk-fleet", "listen: 127.0.0.1:4271", "nats-route://127.0.0.1:4270", "nats-route://127.0.0.1:4272",
		"listen: 127.0.0.1:4261", `user: "leaf"`, `password: "pa\"ss"`} {
		if !strings.Contains(conf, want) {
			t.Errorf("NodeConfig of n1 lacks %q:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, "4271\n    nats-route") || strings.Contains(conf, "nats-route://127.0.0.1:4271") {
		t.Errorf("NodeConfig of n1 routes to itself:\n%s", conf)
	}
}

// leaf starts an in-process nats-server that joins the cluster as a leaf node
// through url, as a yolk master's embedded server does: JetStream of its own in
// domain local, and the leaf user's credentials.
func leaf(t *testing.T, name, addr, password string) *server.Server {
	t.Helper()
	u := &url.URL{Scheme: "nats", Host: addr, User: url.UserPassword(DefaultLeafUser, password)}
	opts := &server.Options{
		ServerName:      "leaf-" + t.Name(),
		Host:            "127.0.0.1",
		Port:            -1,
		JetStream:       true,
		JetStreamDomain: "local",
		StoreDir:        t.TempDir(),
		NoSigs:          true,
		LeafNode: server.LeafNodeOpts{
			ReconnectInterval: 100 * time.Millisecond,
			Remotes:           []*server.RemoteLeafOpts{{URLs: []*url.URL{u}}},
		},
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("leaf server not ready")
	}
	return s
}

func TestLeafJoinsThroughAProxyThatCutsIt(t *testing.T) {
	c, out := startCluster(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	p, err := NewProxy(fmt.Sprintf("127.0.0.1:%d", c.Nodes[0].Spec.Leaf))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	s := leaf(t, "h0", p.Addr(), c.Config().LeafPassword)
	leafs := func(want int) error {
		return poll(ctx, fmt.Sprintf("wait for %d leaf connections", want), nil, func() error {
			if n := s.NumLeafNodes(); n != want {
				return fmt.Errorf("%d leaf connections", n)
			}
			return nil
		})
	}
	if err := leafs(1); err != nil {
		t.Fatal(err)
	}

	// A client of the leaf reaches the cluster's JetStream by its domain, and the
	// leaf's own by its.
	if err := AccountInfo(ctx, s.ClientURL(), DefaultDomain); err != nil {
		t.Fatalf("JetStream domain %s through the leaf: %v", DefaultDomain, err)
	}
	if err := AccountInfo(ctx, s.ClientURL(), "local"); err != nil {
		t.Fatalf("JetStream domain local on the leaf: %v", err)
	}
	put := func(v string) error {
		return poll(ctx, "put "+v+" through the leaf", nil, func() error {
			_, err := kv(ctx, t, s.ClientURL()).Put(ctx, "k", []byte(v))
			return err
		})
	}
	if err := put("from the leaf"); err != nil {
		t.Fatal(err)
	}
	if e, err := kv(ctx, t, c.Nodes[1].ClientURL()).Get(ctx, "k"); err != nil || string(e.Value()) != "from the leaf" {
		t.Fatalf("Get through n1 = %v, %v; want the leaf's value", e, err)
	}

	p.Cut()
	if err := leafs(0); err != nil {
		t.Fatal(err)
	}
	if err := p.Restore(); err != nil {
		t.Fatal(err)
	}
	if err := leafs(1); err != nil {
		t.Fatal(err)
	}
	if err := put("after the cut"); err != nil {
		t.Fatal(err)
	}
	// Through the proxy again, not straight to another node's leaf port.
	lz, err := s.Leafz(nil)
	if err != nil || len(lz.Leafs) != 1 || fmt.Sprintf("%s:%d", lz.Leafs[0].IP, lz.Leafs[0].Port) != p.Addr() {
		t.Errorf("leaf connections after Restore: %+v, %v; want one, to the proxy %s", lz, err, p.Addr())
	}

	// A leaf with a wrong password is refused.
	bad := leaf(t, "h1", fmt.Sprintf("127.0.0.1:%d", c.Nodes[1].Spec.Leaf), "wrong")
	if err := poll(ctx, "wait for the refusal in n1's log", nil, func() error {
		if !strings.Contains(out.String(), `authentication error - User "leaf"`) {
			return errors.New("not yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n := bad.NumLeafNodes(); n != 0 {
		t.Errorf("a leaf with a wrong password has %d leaf connections, want 0", n)
	}
}
