package fleetrig

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of a Config's zero values: the layout of make fleet.
const (
	DefaultClusterName = "yolk-fleet"
	DefaultDomain      = "fleet"
	DefaultLeafUser    = "leaf"
)

// NodeSpec is one nats-server node's name and ports (on 127.0.0.1).
type NodeSpec struct {
	Name   string // server name, also the name of its store directory and config file
	Client int    // client port
	Leaf   int    // leaf node listener
	Route  int    // cluster route port
}

// DefaultNodes is make fleet's cluster: n0, n1 and n2 on client ports 4250 to
// 4252, leaf node ports 4260 to 4262 and route ports 4270 to 4272.
func DefaultNodes() []NodeSpec {
	return []NodeSpec{
		{Name: "n0", Client: 4250, Leaf: 4260, Route: 4270},
		{Name: "n1", Client: 4251, Leaf: 4261, Route: 4271},
		{Name: "n2", Client: 4252, Leaf: 4262, Route: 4272},
	}
}

// FreeNodes is n nodes named n0, n1, ... on ports free on 127.0.0.1 when it is
// called (another program may take one before the node starts: tests only).
func FreeNodes(n int) ([]NodeSpec, error) {
	ports, err := FreePorts(3 * n)
	if err != nil {
		return nil, err
	}
	nodes := make([]NodeSpec, n)
	for i := range nodes {
		nodes[i] = NodeSpec{Name: "n" + strconv.Itoa(i), Client: ports[3*i], Leaf: ports[3*i+1], Route: ports[3*i+2]}
	}
	return nodes, nil
}

// FreePorts is n distinct TCP ports free on 127.0.0.1 when it is called.
func FreePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		defer l.Close() // held until all are chosen, so they differ
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Config describes a cluster. The zero value of each field but Binary, Dir and
// Nodes is a usable default.
type Config struct {
	Binary string     // the nats-server executable
	Dir    string     // where each node's config file, store directory and pid go
	Nodes  []NodeSpec // one or more; all route to each other

	Name         string // cluster name; default DefaultClusterName
	Domain       string // JetStream domain; default DefaultDomain
	LeafUser     string // the user leaf nodes authenticate as; default DefaultLeafUser
	LeafPassword string // its password; required
	Log          *Log   // where the nodes' output goes; nil: nowhere
	// Debug adds nats-server's -D (debug log) to each node.
	Debug bool
}

// Cluster is a NATS cluster of nats-server processes on 127.0.0.1. Nodes are
// started and stopped one by one (Node) or all together.
type Cluster struct {
	cfg   Config
	Nodes []*Node // in the order of Config.Nodes
}

// Node is one nats-server of a Cluster. Its Process starts, stops, kills and
// restarts it; its store directory survives a restart, as a disk would.
type Node struct {
	*Process
	Spec       NodeSpec
	ConfigFile string
	StoreDir   string
}

// New writes each node's config file under cfg.Dir and returns the cluster, not
// started.
func New(cfg Config) (*Cluster, error) {
	if cfg.Binary == "" || cfg.Dir == "" || len(cfg.Nodes) == 0 {
		return nil, errors.New("fleetrig: Config needs Binary, Dir and Nodes")
	}
	if cfg.LeafPassword == "" {
		return nil, errors.New("fleetrig: Config needs a LeafPassword")
	}
	cfg.Name = cmpOr(cfg.Name, DefaultClusterName)
	cfg.Domain = cmpOr(cfg.Domain, DefaultDomain)
	cfg.LeafUser = cmpOr(cfg.LeafUser, DefaultLeafUser)
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("fleetrig: %w", err)
	}
	c := &Cluster{cfg: cfg}
	for _, spec := range cfg.Nodes {
		n := &Node{
			Spec:       spec,
			ConfigFile: filepath.Join(dir, spec.Name+".conf"),
			StoreDir:   filepath.Join(dir, spec.Name),
		}
		if err := os.MkdirAll(n.StoreDir, 0o755); err != nil {
			return nil, fmt.Errorf("fleetrig: %w", err)
		}
		if err := os.WriteFile(n.ConfigFile, []byte(NodeConfig(cfg, spec, n.StoreDir)), 0o600); err != nil {
			return nil, fmt.Errorf("fleetrig: %w", err)
		}
		args := []string{"-c", n.ConfigFile}
		if cfg.Debug {
			args = append(args, "-D")
		}
		n.Process = &Process{Name: spec.Name, Path: cfg.Binary, Args: args, Log: cfg.Log}
		c.Nodes = append(c.Nodes, n)
	}
	return c, nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// NodeConfig is the nats-server config file of one node of cfg: listeners on
// 127.0.0.1, JetStream with cfg.Domain and file storage in storeDir, routes to every
// other node, and a leaf node listener that admits cfg.LeafUser and does not
// advertise the other nodes' leaf URLs.
func NodeConfig(cfg Config, spec NodeSpec, storeDir string) string {
	var routes []string
	for _, o := range cfg.Nodes {
		if o.Name != spec.Name {
			routes = append(routes, fmt.Sprintf("    nats-route://127.0.0.1:%d", o.Route))
		}
	}
	return fmt.Sprintf(`# written by fleetrig: node %[1]s of cluster %[2]s
server_name: %[1]s
listen: 127.0.0.1:%[3]d

jetstream {
  domain: %[4]s
  store_dir: %[5]q
}

cluster {
  name: %[2]s
  listen: 127.0.0.1:%[6]d
  routes: [
%[7]s
  ]
}

leafnodes {
  listen: 127.0.0.1:%[8]d
  # A leaf connects only to the URLs it was given (YOLK_CLUSTER_URL), not to
  # those the cluster would gossip: a proxy in front of a node cuts its link.
  no_advertise: true
  authorization {
    user: %[9]q
    password: %[10]q
  }
}
`, spec.Name, cfg.Name, spec.Client, cfg.Domain, storeDir, spec.Route, strings.Join(routes, "\n"),
		spec.Leaf, cmpOr(cfg.LeafUser, DefaultLeafUser), cfg.LeafPassword)
}

// ClientURL is the node's client URL.
func (n *Node) ClientURL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.Spec.Client) }

// LeafURL is the node's leaf node URL, without credentials.
func (n *Node) LeafURL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.Spec.Leaf) }

// WaitReady waits until the node accepts a client connection and answers a round
// trip, or ctx is done. It fails at once if the process exits.
func (n *Node) WaitReady(ctx context.Context) error {
	return poll(ctx, "wait for "+n.Name, n.Done(), func() error {
		nc, err := nats.Connect(n.ClientURL(), nats.Timeout(time.Second), nats.NoReconnect(), nats.Name("fleetrig"))
		if err != nil {
			return err
		}
		defer nc.Close()
		return nc.FlushTimeout(time.Second)
	})
}

// Restart stops the node (SIGTERM; SIGKILL if ctx is done first), starts it again
// and waits until it is ready.
func (n *Node) Restart(ctx context.Context) error {
	if err := n.Stop(ctx); err != nil {
		return err
	}
	if err := n.Start(); err != nil {
		return err
	}
	return n.WaitReady(ctx)
}

// Config is the cluster's configuration, with its defaults filled in.
func (c *Cluster) Config() Config { return c.cfg }

// ClientURLs is every node's client URL.
func (c *Cluster) ClientURLs() []string {
	var urls []string
	for _, n := range c.Nodes {
		urls = append(urls, n.ClientURL())
	}
	return urls
}

// LeafURLs is every node's leaf node URL, comma-separated: a value for
// YOLK_CLUSTER_URL.
func (c *Cluster) LeafURLs() string {
	var urls []string
	for _, n := range c.Nodes {
		urls = append(urls, n.LeafURL())
	}
	return strings.Join(urls, ",")
}

// Start starts every node and waits until each is ready and the cluster's
// JetStream has a meta leader (WaitJetStream), or ctx is done. On failure it kills
// the nodes it started.
func (c *Cluster) Start(ctx context.Context) error {
	for _, n := range c.Nodes {
		if err := n.Start(); err != nil {
			c.Kill()
			return err
		}
	}
	for _, n := range c.Nodes {
		if err := n.WaitReady(ctx); err != nil {
			c.Kill()
			return err
		}
	}
	if err := c.WaitJetStream(ctx); err != nil {
		c.Kill()
		return err
	}
	return nil
}

// WaitJetStream waits until the cluster's JetStream answers an account info
// request in its domain, which it does once it has a meta leader, or until ctx is
// done. It asks each running node in turn.
func (c *Cluster) WaitJetStream(ctx context.Context) error {
	i := 0
	return poll(ctx, "wait for JetStream domain "+c.cfg.Domain, nil, func() error {
		n := c.Nodes[i%len(c.Nodes)]
		i++
		if !n.Running() {
			return fmt.Errorf("%s is not running", n.Name)
		}
		return AccountInfo(ctx, n.ClientURL(), c.cfg.Domain)
	})
}

// AccountInfo asks JetStream in domain for the account's info through a new
// connection to url, with a deadline of two seconds within ctx.
func AccountInfo(ctx context.Context, url, domain string) error {
	nc, err := nats.Connect(url, nats.Timeout(time.Second), nats.NoReconnect(), nats.Name("fleetrig"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.NewWithDomain(nc, domain)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}

// Stop stops every node (SIGTERM, then SIGKILL for those still running when ctx is
// done) and returns their errors joined.
func (c *Cluster) Stop(ctx context.Context) error {
	errs := make([]error, len(c.Nodes))
	var wg sync.WaitGroup
	for i, n := range c.Nodes {
		wg.Go(func() { errs[i] = n.Stop(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Kill kills every node and waits until each has exited.
func (c *Cluster) Kill() {
	for _, n := range c.Nodes {
		n.Kill()
	}
}

// pollEvery is how often poll tries again.
const pollEvery = 50 * time.Millisecond

// poll calls try until it returns nil, ctx is done, or exited is closed (a process
// that was waited for is gone), and returns an error with try's last one.
func poll(ctx context.Context, what string, exited <-chan struct{}, try func() error) error {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		err := try()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %v)", what, context.Cause(ctx), err)
		case <-exited:
			return fmt.Errorf("%s: the process exited (last: %v)", what, err)
		case <-t.C:
		}
	}
}
