package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/yolkgo/yolk/internal/cli"
	"github.com/yolkgo/yolk/internal/fleetrig"
)

const synopsis = `fleet: yolk's fleet on one machine, in the foreground (make fleet): a NATS
cluster with JetStream (domain fleet), the example source, then yolk hosts, each a
master in fork mode that joins the cluster as a leaf node (YOLK_CLUSTER_URL).
SIGINT or SIGTERM stops the hosts, then the source, then the cluster; a second
one kills them. It runs the binaries in FLEET_BIN (make build, and nats-server
built from go.mod's module); every other YOLK_ and SOURCE_ variable of its
environment reaches the hosts and the source.

Usage:
  fleet          run until SIGINT or SIGTERM
  fleet --help   this text`

// config is the fleet's layout. The cluster's port lists have one entry per
// node, FLEET_HTTP_PORTS one per host.
type config struct {
	Bin         string        `env:"FLEET_BIN" envDefault:"bin" help:"directory of master, agent, worker, source and nats-server"`
	RunDir      string        `env:"FLEET_RUN_DIR" envDefault:"run/fleet" help:"the nats nodes' files go in <dir>/nats, host hN's run directory is <dir>/hN"`
	ClientPorts []int         `env:"FLEET_NATS_CLIENT_PORTS" envDefault:"4250,4251,4252" help:"NATS client ports, one per node (on 127.0.0.1)"`
	LeafPorts   []int         `env:"FLEET_NATS_LEAF_PORTS" envDefault:"4260,4261,4262" help:"NATS leaf node ports, one per node: the hosts' YOLK_CLUSTER_URL"`
	RoutePorts  []int         `env:"FLEET_NATS_ROUTE_PORTS" envDefault:"4270,4271,4272" help:"NATS cluster route ports, one per node"`
	HTTPPorts   []int         `env:"FLEET_HTTP_PORTS" envDefault:"7001,7011,7021" help:"one per host: its workers' HTTP port (YOLK_HTTP_ADDR)"`
	SourceAddr  string        `env:"FLEET_SOURCE_ADDR" envDefault:"127.0.0.1:7002" help:"the source's HTTP address (SOURCE_ADDR, YOLK_SOURCE_URL)"`
	SourceNATS  string        `env:"FLEET_SOURCE_NATS_ADDR" envDefault:"127.0.0.1:4223" help:"the source's change feed (SOURCE_NATS_ADDR, YOLK_PUSH_URL)"`
	Workers     int           `env:"YOLK_WORKERS" envDefault:"2" help:"workers per host"`
	StartWait   time.Duration `env:"FLEET_START_TIMEOUT" envDefault:"60s" help:"how long the cluster, the source and each host may take to be ready"`
	StopWait    time.Duration `env:"FLEET_STOP_TIMEOUT" envDefault:"45s" help:"how long each process may take to stop after SIGTERM before it is killed"`
}

func (c config) validate() error {
	n := len(c.ClientPorts)
	if n == 0 || len(c.LeafPorts) != n || len(c.RoutePorts) != n {
		return cli.Usagef("FLEET_NATS_CLIENT_PORTS, FLEET_NATS_LEAF_PORTS and FLEET_NATS_ROUTE_PORTS: want one port per node in each, got %d, %d and %d",
			n, len(c.LeafPorts), len(c.RoutePorts))
	}
	if len(c.HTTPPorts) == 0 {
		return cli.BadValue("FLEET_HTTP_PORTS", "", "want a port per host")
	}
	if c.Workers < 1 {
		return cli.BadValue("YOLK_WORKERS", strconv.Itoa(c.Workers), "want 1 or more")
	}
	for _, a := range []struct{ name, addr string }{{"FLEET_SOURCE_ADDR", c.SourceAddr}, {"FLEET_SOURCE_NATS_ADDR", c.SourceNATS}} {
		if err := cli.CheckHostPort(a.addr); err != nil {
			return cli.BadValue(a.name, a.addr, "%v", err)
		}
	}
	return nil
}

// fleet is what run started, in start order.
type fleet struct {
	cfg     config
	log     *fleetrig.Log
	cluster *fleetrig.Cluster
	source  *fleetrig.Process
	hosts   []*fleetrig.Process
}

// run starts the fleet, waits for ctx, and stops it. hard is done when the stop
// must not wait: then every process left is killed.
func run(ctx, hard context.Context, args, environ []string, stdout, stderr io.Writer) error {
	cfg, err := cli.Parse[config](environ)
	if err != nil {
		return err
	}
	if cli.WantsHelp(args) {
		cli.Usage(stdout, synopsis, cfg)
		return nil
	}
	if len(args) > 0 {
		return cli.Usagef("unexpected arguments %q (see --help)", args)
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	names := []string{"fleet", "source"}
	for i := range max(len(cfg.ClientPorts), len(cfg.HTTPPorts)) {
		names = append(names, "n"+strconv.Itoa(i), "h"+strconv.Itoa(i))
	}
	f := &fleet{cfg: cfg, log: fleetrig.NewLog(stdout, names...)}
	if err := f.start(ctx, environ); err != nil {
		stopErr := f.stop(hard)
		if ctx.Err() != nil { // interrupted while starting: a clean stop
			return stopErr
		}
		return errors.Join(err, stopErr)
	}
	f.hint()

	exited := f.watch(ctx)
	stopErr := f.stop(hard)
	if len(exited) > 0 {
		return errors.Join(fmt.Errorf("exited before the stop: %s", strings.Join(exited, ", ")), stopErr)
	}
	return stopErr
}

// start starts the cluster, then the source, then the hosts, each ready before
// the next, within cfg.StartWait each.
func (f *fleet) start(ctx context.Context, environ []string) error {
	cfg := f.cfg
	bin := func(name string) string { return filepath.Join(cfg.Bin, name) }
	for _, name := range []string{"nats-server", "master", "agent", "worker", "source"} {
		if _, err := os.Stat(bin(name)); err != nil {
			return fmt.Errorf("%w (make fleet builds it)", err)
		}
	}
	password, err := randomHex(16)
	if err != nil {
		return err
	}
	var nodes []fleetrig.NodeSpec
	for i, p := range cfg.ClientPorts {
		nodes = append(nodes, fleetrig.NodeSpec{Name: "n" + strconv.Itoa(i), Client: p, Leaf: cfg.LeafPorts[i], Route: cfg.RoutePorts[i]})
	}
	f.cluster, err = fleetrig.New(fleetrig.Config{
		Binary: bin("nats-server"), Dir: filepath.Join(cfg.RunDir, "nats"), Nodes: nodes, LeafPassword: password, Log: f.log,
	})
	if err != nil {
		return err
	}
	within := func(what string, wait func(context.Context) error) error {
		ctx, cancel := context.WithTimeout(ctx, cfg.StartWait)
		defer cancel()
		start := time.Now()
		if err := wait(ctx); err != nil {
			return err
		}
		f.log.Printf("fleet", "%s in %v", what, time.Since(start).Round(time.Millisecond))
		return nil
	}
	f.log.Printf("fleet", "starting the NATS cluster %s: %d nodes, client ports %v, leaf ports %v", fleetrig.DefaultClusterName, len(nodes), cfg.ClientPorts, cfg.LeafPorts)
	if err := within("NATS cluster ready, JetStream domain "+fleetrig.DefaultDomain+" has a meta leader", f.cluster.Start); err != nil {
		return err
	}

	f.source = &fleetrig.Process{Name: "source", Path: bin("source"), Log: f.log,
		Env: setenv(environ, "SOURCE_ADDR", cfg.SourceAddr, "SOURCE_NATS_ADDR", cfg.SourceNATS)}
	if err := f.source.Start(); err != nil {
		return err
	}
	if err := within("source ready on "+cfg.SourceAddr, func(ctx context.Context) error {
		return waitHTTP(ctx, "http://"+cfg.SourceAddr+"/healthz", f.source)
	}); err != nil {
		return err
	}

	for i, port := range cfg.HTTPPorts {
		name := "h" + strconv.Itoa(i)
		env := setenv(environ,
			"YOLK_MODE", "fork",
			"YOLK_HOST", name,
			"YOLK_HTTP_ADDR", ":"+strconv.Itoa(port),
			"YOLK_ADMIN_ADDR", adminAddr(port),
			"YOLK_RUN_DIR", filepath.Join(cfg.RunDir, name),
			"YOLK_WORKERS", strconv.Itoa(cfg.Workers),
			"YOLK_SOURCE_URL", "http://"+cfg.SourceAddr,
			"YOLK_PUSH_URL", "nats://"+cfg.SourceNATS,
			"YOLK_CLUSTER_URL", f.cluster.LeafURLs(),
			"YOLK_CLUSTER_USER", f.cluster.Config().LeafUser,
			"YOLK_CLUSTER_PASSWORD", password,
			"YOLK_CLUSTER_CREDS", "",
			"YOLK_CLUSTER_DOMAIN", fleetrig.DefaultDomain,
		)
		h := &fleetrig.Process{Name: name, Path: bin("master"), Env: env, Log: f.log}
		if err := h.Start(); err != nil {
			return err
		}
		f.hosts = append(f.hosts, h)
	}
	return within(fmt.Sprintf("%d hosts ready on ports %v", len(f.hosts), cfg.HTTPPorts), func(ctx context.Context) error {
		for i, h := range f.hosts {
			if err := waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", cfg.HTTPPorts[i]), h); err != nil {
				return err
			}
		}
		return nil
	})
}

// adminAddr is the status page's address of the host serving HTTP on port:
// 7009 beside 7001, 7019 beside 7011, and so on.
func adminAddr(httpPort int) string { return "127.0.0.1:" + strconv.Itoa(httpPort+8) }

// hint prints where to look.
func (f *fleet) hint() {
	var b strings.Builder
	fmt.Fprintf(&b, "the fleet is up: %d NATS nodes (client ports %v), the source on %s, %d hosts. Try:\n", len(f.cluster.Nodes), f.cfg.ClientPorts, f.cfg.SourceAddr, len(f.hosts))
	for i, h := range f.hosts {
		fmt.Fprintf(&b, "  curl -s localhost:%d/data        # host %s\n", f.cfg.HTTPPorts[i], h.Name)
	}
	fmt.Fprintf(&b, "  curl -s -X PUT localhost:%s/data/greeting -d '\"hello\"'   # a change at the source\n", port(f.cfg.SourceAddr))
	for i, h := range f.hosts {
		fmt.Fprintf(&b, "  YOLK_RUN_DIR=%s %s status   # or http://%s/\n", filepath.Join(f.cfg.RunDir, h.Name), filepath.Join(f.cfg.Bin, "master"), adminAddr(f.cfg.HTTPPorts[i]))
	}
	b.WriteString("Ctrl-C stops the hosts, then the source, then the cluster.")
	for line := range strings.Lines(b.String()) {
		f.log.Printf("fleet", "%s", strings.TrimSuffix(line, "\n"))
	}
}

// watch waits until ctx is done. A process that exits meanwhile is reported; the
// others keep running. It returns the names of those that exited.
func (f *fleet) watch(ctx context.Context) []string {
	procs := append([]*fleetrig.Process{f.source}, f.hosts...)
	for _, n := range f.cluster.Nodes {
		procs = append(procs, n.Process)
	}
	var (
		mu     sync.Mutex
		exited []string
		wg     sync.WaitGroup
	)
	for _, p := range procs {
		wg.Go(func() {
			select {
			case <-ctx.Done():
			case <-p.Done():
				f.log.Printf("fleet", "%s exited (%v); the others keep running, Ctrl-C stops them", p.Name, exitReason(p.Err()))
				mu.Lock()
				exited = append(exited, p.Name)
				mu.Unlock()
			}
		})
	}
	<-ctx.Done()
	wg.Wait()
	slices.Sort(exited)
	return exited
}

// stop stops the hosts together, then the source, then the cluster's nodes: each
// with SIGTERM, killed after cfg.StopWait or once hard is done.
func (f *fleet) stop(hard context.Context) error {
	ctx, cancel := context.WithTimeout(hard, f.cfg.StopWait)
	defer cancel()
	var errs []error
	stopAll := func(what string, procs []*fleetrig.Process) {
		var running []*fleetrig.Process
		for _, p := range procs {
			if p != nil && p.Running() {
				running = append(running, p)
			}
		}
		if len(running) == 0 {
			return
		}
		f.log.Printf("fleet", "stopping %s", what)
		res := make([]error, len(running))
		var wg sync.WaitGroup
		for i, p := range running {
			wg.Go(func() { res[i] = p.Stop(ctx) })
		}
		wg.Wait()
		errs = append(errs, res...)
	}
	stopAll("the hosts", f.hosts)
	stopAll("the source", []*fleetrig.Process{f.source})
	if f.cluster != nil {
		var nodes []*fleetrig.Process
		for _, n := range f.cluster.Nodes {
			nodes = append(nodes, n.Process)
		}
		stopAll("the NATS cluster", nodes)
	}
	err := errors.Join(errs...)
	if err == nil {
		f.log.Printf("fleet", "stopped")
	}
	return err
}

// waitHTTP polls url until it answers 200, p exits, or ctx is done.
func waitHTTP(ctx context.Context, url string, p *fleetrig.Process) error {
	client := &http.Client{Timeout: time.Second}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var last error
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s (GET %s): %w (last: %v)", p.Name, url, context.Cause(ctx), last)
		case <-p.Done():
			return fmt.Errorf("wait for %s: it exited (%v)", p.Name, exitReason(p.Err()))
		case <-t.C:
		}
	}
}

func exitReason(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// setenv returns environ with each key of kv (key, value, key, value...) set to
// its value, replacing what environ had; an empty value removes the key.
func setenv(environ []string, kv ...string) []string {
	out := slices.Clone(environ)
	for i := 0; i+1 < len(kv); i += 2 {
		key, value := kv[i], kv[i+1]
		out = slices.DeleteFunc(out, func(e string) bool { return strings.HasPrefix(e, key+"=") })
		if value != "" {
			out = append(out, key+"="+value)
		}
	}
	return out
}

func port(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random password: %w", err)
	}
	return hex.EncodeToString(b), nil
}
