package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/yolkgo/yolk/internal/fleetrig"
)

// Issue 13: a fleet of hosts joined by a 3-node NATS cluster with JetStream,
// every process real: nats-server from go.mod's module, the masters, their
// agents and workers, the source.

// fleetLeafPassword is the cluster's leaf node password in these tests.
const fleetLeafPassword = "e2e-leaf-secret"

// startNATSCluster starts a 3-node cluster on free ports; it is killed when
// the test ends.
func startNATSCluster(t *testing.T) *fleetrig.Cluster {
	t.Helper()
	nodes, err := fleetrig.FreeNodes(3)
	if err != nil {
		t.Fatal(err)
	}
	c, err := fleetrig.New(fleetrig.Config{
		Binary: filepath.Join(binDir, "nats-server"), Dir: t.TempDir(), Nodes: nodes, LeafPassword: fleetLeafPassword,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Kill)
	return c
}

// fleetHost is one host of a fleet: a master and what it started.
type fleetHost struct {
	*master
	name    string
	base    string            // its workers' HTTP base URL
	proxies []*fleetrig.Proxy // its leaf links, when they go through proxies
}

// startFleetHost starts a master of binary bin (master: the cache
// application) as host name of cluster c, with env; proxied puts its leaf
// links through proxies that the test can cut.
func startFleetHost(t *testing.T, c *fleetrig.Cluster, src *source, bin, name string, proxied bool, env ...string) *fleetHost {
	t.Helper()
	h := &fleetHost{name: name}
	urls := c.LeafURLs()
	if proxied {
		var via []string
		for _, n := range c.Nodes {
			p, err := fleetrig.NewProxy(fmt.Sprintf("127.0.0.1:%d", n.Spec.Leaf))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			h.proxies = append(h.proxies, p)
			via = append(via, "nats://"+p.Addr())
		}
		urls = strings.Join(via, ",")
	}
	fleetEnv := []string{
		"YOLK_CLUSTER_URL=" + urls, "YOLK_CLUSTER_USER=" + fleetrig.DefaultLeafUser,
		"YOLK_CLUSTER_PASSWORD=" + fleetLeafPassword, "YOLK_HOST=" + name, "YOLK_LEASE_TTL=1s",
	}
	if bin == "" {
		h.master = startMasterWith(t, src, append(fleetEnv, env...)...)
	} else {
		h.master = startBinaryMaster(t, bin, src, append(fleetEnv, env...)...)
	}
	h.base = h.waitReady(t)
	return h
}

// startBinaryMaster starts a one-binary application (examples/ticker) as its
// master, as startMasterWith does bin/master.
func startBinaryMaster(t *testing.T, bin string, src *source, env ...string) *master {
	t.Helper()
	runDir := t.TempDir()
	base := []string{
		"PATH=/usr/bin:/bin", "YOLK_RUN_DIR=" + runDir, "YOLK_HTTP_ADDR=127.0.0.1:0", "YOLK_WORKERS=2",
		"YOLK_SHUTDOWN_TIMEOUT=5s", "YOLK_READY_TIMEOUT=10s", "YOLK_LOG_FORMAT=json", "GORACE=atexit_sleep_ms=0",
	}
	p := startProcess(t, bin, append(base, env...))
	return &master{process: p, runDir: runDir, src: src, bin: bin}
}

// startCacheHosts starts n hosts h0.. of the cache application on c, with
// only push refreshing (the schedules would add fetches).
func startCacheHosts(t *testing.T, c *fleetrig.Cluster, src *source, n int) []*fleetHost {
	t.Helper()
	var hosts []*fleetHost
	for i := range n {
		hosts = append(hosts, startFleetHost(t, c, src, "", fmt.Sprintf("h%d", i), false,
			"YOLK_PULL_INTERVAL=1h", "YOLK_FORCE_INTERVAL=1h"))
	}
	return hosts
}

// cut cuts the host's leaf links; restore restores them.
func (h *fleetHost) cut() {
	for _, p := range h.proxies {
		p.Cut()
	}
}

func (h *fleetHost) restore(t *testing.T) {
	for _, p := range h.proxies {
		if err := p.Restore(); err != nil {
			t.Fatal(err)
		}
	}
}

// waitServed waits until each host's 2 workers have installed version.
func fleetServed(t *testing.T, hosts []*fleetHost, version string, timeout time.Duration) {
	t.Helper()
	for _, h := range hosts {
		h.logs.waitMore(t, timeout, 1, `"msg":"update memory cache from remote"`, `"version":"`+version+`"`)
	}
}

// The fleet makes one fetch per change between its hosts, and every worker of
// every host serves each change: 200 changes over 3 hosts of 2 workers.
func TestFleetOneFetchPerChange(t *testing.T) {
	c := startNATSCluster(t)
	src := startSource(t)
	hosts := startCacheHosts(t, c, src, 3)
	// Every host's workers hold the start's data, and a leader is chosen.
	v := src.put(t, "warm", "0")
	fleetServed(t, hosts, v, 20*time.Second)

	changes := pick(200, 1000)
	before := src.stats(t)
	var took []time.Duration
	for i := range changes {
		start := time.Now()
		v := src.put(t, "k", fmt.Sprint(i))
		fleetServed(t, hosts, v, 10*time.Second)
		took = append(took, time.Since(start))
	}
	after := src.stats(t)
	fetches := after.Fetches - before.Fetches
	checks := after.Checks - before.Checks
	slices.Sort(took)
	t.Logf("fleet of 3 hosts x 2 workers, %d changes: %.2f fetches per change (%d fetches, %d not-modified checks); "+
		"change to every worker: p50 %v, p99 %v, max %v", changes, float64(fetches)/float64(changes), fetches, checks,
		quantile(took, 0.50).Round(10*time.Microsecond), quantile(took, 0.99).Round(10*time.Microsecond), took[len(took)-1].Round(10*time.Microsecond))
	if fetches != changes {
		t.Errorf("%d fetches for %d changes, want exactly one each", fetches, changes)
	}
}

// tickRuns collects the runs of examples/ticker's Cluster schedule that its
// workers report (TICKER_REPORT_URL).
type tickRuns struct {
	mu    sync.Mutex
	runs  []tickRun
	added chan struct{}
}

type tickRun struct {
	Host, Worker string
	Tick, Fence  uint64
	At           time.Time
	Got          time.Time `json:"-"`
}

func (r *tickRuns) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var run tickRun
	body, _ := io.ReadAll(req.Body)
	if err := json.Unmarshal(body, &run); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	run.Got = time.Now()
	r.mu.Lock()
	r.runs = append(r.runs, run)
	close(r.added)
	r.added = make(chan struct{})
	r.mu.Unlock()
}

// distinct returns how many distinct ticks ran.
func (r *tickRuns) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[uint64]bool{}
	for _, run := range r.runs {
		seen[run.Tick] = true
	}
	return len(seen)
}

// waitTicks waits until n more distinct ticks have run than now, and returns the
// host of the last run.
func (r *tickRuns) waitTicks(t *testing.T, n int, timeout time.Duration) string {
	t.Helper()
	want := r.distinct() + n
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		ch, last := r.added, ""
		if len(r.runs) > 0 {
			last = r.runs[len(r.runs)-1].Host
		}
		r.mu.Unlock()
		if r.distinct() >= want {
			return last
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%d ticks ran, want %d within %v", r.distinct(), want, timeout)
		}
	}
}

// A Cluster schedule ticking every 200 ms runs exactly once per tick across
// 3 hosts over 100 ticks, while the leader host's master is SIGKILLed,
// another host's leaf link is cut and restored, and a NATS node restarts.
func TestFleetClusterScheduleOncePerTick(t *testing.T) {
	c := startNATSCluster(t)
	runs := &tickRuns{added: make(chan struct{})}
	collector := httptest.NewServer(runs)
	defer collector.Close()
	env := []string{"TICKER_EVERY=200ms", "TICKER_REPORT_URL=" + collector.URL}
	hosts := map[string]*fleetHost{}
	for i := range 3 {
		name := fmt.Sprintf("h%d", i)
		hosts[name] = startFleetHost(t, c, nil, "ticker", name, true, env...)
	}
	const ticks = 100
	events := []string{}
	leader := runs.waitTicks(t, 5, 20*time.Second)

	// The leader's master dies outright; its agent and workers follow it.
	events = append(events, "SIGKILL "+leader)
	killed := hosts[leader]
	killed.cmd.Process.Signal(syscall.SIGKILL)
	killed.wait(t, 10*time.Second)
	delete(hosts, leader)
	next := runs.waitTicks(t, 10, 20*time.Second)
	if next == leader {
		t.Fatalf("the killed host %s still runs ticks", leader)
	}

	// Another host (not the leader) loses its leaf link for 2 s.
	var other string
	for name := range hosts {
		if name != next {
			other = name
		}
	}
	events = append(events, "cut "+other)
	hosts[other].cut()
	runs.waitTicks(t, 10, 20*time.Second)
	events = append(events, "restore "+other)
	hosts[other].restore(t)
	runs.waitTicks(t, 10, 20*time.Second)

	// One NATS node restarts.
	events = append(events, "restart n1")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	if err := c.Nodes[1].Restart(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	if left := ticks - runs.distinct(); left > 0 {
		runs.waitTicks(t, left, time.Duration(left)*time.Second+20*time.Second)
	}

	runs.mu.Lock()
	all := slices.Clone(runs.runs)
	runs.mu.Unlock()
	slices.SortFunc(all, func(a, b tickRun) int { return int(a.Tick) - int(b.Tick) })
	byTick := map[uint64][]tickRun{}
	var gap time.Duration
	var fence uint64
	for i, r := range all {
		byTick[r.Tick] = append(byTick[r.Tick], r)
		if i > 0 {
			gap = max(gap, r.At.Sub(all[i-1].At))
		}
		if r.Fence <= fence {
			t.Errorf("tick %d ran with fence %d after %d: fences must grow", r.Tick, r.Fence, fence)
		}
		fence = r.Fence
	}
	first, last := all[0].Tick, all[len(all)-1].Tick
	missed := 0
	for tick := first; tick <= last; tick++ {
		switch n := len(byTick[tick]); {
		case n == 0:
			missed++
		case n > 1:
			t.Errorf("tick %d ran %d times: %+v", tick, n, byTick[tick])
		}
	}
	t.Logf("cluster schedule every 200ms over %d ticks: %d runs, %.2f runs per tick run, %d ticks missed, "+
		"longest gap between two runs %v; events: %s", last-first+1, len(all),
		float64(len(all))/float64(len(byTick)), missed, gap, strings.Join(events, ", "))
	if len(byTick) < ticks {
		t.Errorf("%d ticks ran, want at least %d", len(byTick), ticks)
	}

	// GatherFleet reaches every worker of every live host, each signed id@host.
	for _, h := range hosts {
		var got map[string][]tickRun
		eventually(t, 10*time.Second, "GET /fleet answered by 4 workers", func() bool {
			resp, err := http.Get(h.base + "/fleet")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			got = nil
			return json.NewDecoder(resp.Body).Decode(&got) == nil && len(got) == 2*len(hosts)
		})
		for from := range got {
			_, host, ok := strings.Cut(from, "@")
			if _, live := hosts[host]; !ok || !live {
				t.Errorf("GET /fleet on %s: a reply from %q", h.name, from)
			}
		}
	}
}

// With the whole cluster down every host keeps serving its last good data
// and reads the remote by itself; when the cluster is back the hosts rejoin
// and the fleet makes one fetch per change again.
func TestFleetClusterDown(t *testing.T) {
	c := startNATSCluster(t)
	src := startSource(t)
	hosts := startCacheHosts(t, c, src, 2)
	v := src.put(t, "k", `"before"`)
	fleetServed(t, hosts, v, 20*time.Second)

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		t.Logf("stop the cluster: %v", err)
	}
	for _, h := range hosts {
		h.logs.waitFor(t, 20*time.Second, "fleet: the cluster cannot be reached; this agent reads the remote itself")
		client := &http.Client{Timeout: 2 * time.Second}
		if code, body, err := get(client, h.base+"/data/k"); err != nil || code != http.StatusOK || body != `"before"` {
			t.Errorf("%s with the cluster down: %d %q %v, want its last good data", h.name, code, body, err)
		}
		out, err := h.cli(t, "status")
		if err != nil || !strings.Contains(string(out), "link to the cluster down") || !strings.Contains(string(out), "alone") {
			t.Errorf("%s's status with the cluster down does not say so (%v):\n%s", h.name, err, out)
		}
	}
	before := src.stats(t)
	v = src.put(t, "k", `"alone"`)
	fleetServed(t, hosts, v, 20*time.Second)
	if got := src.stats(t).Fetches - before.Fetches; got != len(hosts) {
		t.Errorf("alone, %d fetches for one change, want one per host (%d)", got, len(hosts))
	}

	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		h.logs.waitFor(t, 30*time.Second, "fleet: checked the remote after the cluster came back")
	}
	before = src.stats(t)
	const changes = 10
	for i := range changes {
		v = src.put(t, "k", fmt.Sprint(i))
		fleetServed(t, hosts, v, 10*time.Second)
	}
	if got := src.stats(t).Fetches - before.Fetches; got != changes {
		t.Errorf("back in the fleet, %d fetches for %d changes, want one each", got, changes)
	}
}
