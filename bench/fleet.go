package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/yolkgo/yolk/internal/fleetrig"
)

// The fleet's shape: issue 13's, that of internal/e2e's fleet tests.
const (
	fleetNodes    = 3 // nats-server nodes of the cluster
	fleetHosts    = 3 // yolk hosts, each a master with its agent and workers
	fleetWorkers  = 2 // workers per host
	fleetLeaseTTL = "3s"
)

// fleet measures refresh convergence across a fleet, as converge does on one
// host: a 3-node nats-server cluster with JetStream (domain fleet), bin/source,
// and 3 masters of 2 workers that join the cluster as leaf nodes. One agent,
// the holder of the cache's lease, reads the source for every host.
func (h *harness) fleet(ctx context.Context) {
	h.logf("fleet: %d-node nats-server cluster, %d hosts of %d workers (source push, %d changes)",
		fleetNodes, fleetHosts, fleetWorkers, h.cfg.changes)
	r, err := h.fleetYolk(ctx)
	if err != nil {
		h.fail("fleet: %v", err)
		return
	}
	h.res.Fleet = &r
	if r.Ms.Max > 10*r.Ms.P50 {
		h.note("fleet: the slowest change took %s, %.0f× the median (%s)", fmtMs(r.Ms.Max), r.Ms.Max/r.Ms.P50, r.Slowest)
	}
	if !h.cfg.runs("converge") {
		h.note("no one-host figure beside the fleet's: the converge section did not run")
	}
}

func (h *harness) fleetYolk(ctx context.Context) (FleetResult, error) {
	res := FleetResult{Hosts: fleetHosts, Nodes: fleetNodes}
	c, out, err := h.startCluster(ctx)
	if err != nil {
		return res, err
	}
	defer c.Kill() // last: the hosts leave the cluster first
	src, err := h.startSource(ctx)
	if err != nil {
		return res, err
	}
	defer src.p.stop(10 * time.Second)
	fleetEnv := []string{
		"YOLK_CLUSTER_URL=" + c.LeafURLs(),
		"YOLK_CLUSTER_USER=" + c.Config().LeafUser,
		"YOLK_CLUSTER_PASSWORD=" + c.Config().LeafPassword,
		"YOLK_LEASE_TTL=" + fleetLeaseTTL,
		// Only the source's change events: no periodic check adds a fetch.
		"YOLK_PULL_INTERVAL=1h", "YOLK_FORCE_INTERVAL=1h",
	}
	var hosts []convergeHost
	defer func() {
		for _, host := range hosts {
			host.m.stop()
		}
	}()
	for i := range fleetHosts {
		name := fmt.Sprintf("h%d", i)
		m, _, _, err := h.startServingAs(ctx, name, fleetWorkers, src, append(fleetEnv, "YOLK_HOST="+name)...)
		if err != nil {
			return res, fmt.Errorf("host %s: %w", name, err)
		}
		hosts = append(hosts, convergeHost{name: name, m: m})
	}
	r, err := h.measureConvergence(ctx, src, hosts, fleetWorkers)
	if err != nil {
		for _, n := range c.Nodes {
			if !n.Running() {
				err = fmt.Errorf("%w (nats-server %s is gone; the cluster's last output:\n%s)", err, n.Name, indent(out.tail(20)))
				break
			}
		}
	}
	res.ConvergeResult = r
	return res, err
}

// startCluster starts a cluster of fleetNodes nats-server nodes on free
// loopback ports, their files under the harness's temporary directory, and
// returns it with its nodes' output. The caller kills it; on an error it is
// already killed.
func (h *harness) startCluster(ctx context.Context) (*fleetrig.Cluster, *lineLog, error) {
	nodes, err := fleetrig.FreeNodes(fleetNodes)
	if err != nil {
		return nil, nil, err
	}
	dir := filepath.Join(h.tmp, "cluster")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	out := newLineLog()
	c, err := fleetrig.New(fleetrig.Config{
		Binary: h.bins.path("nats-server"), Dir: dir, Nodes: nodes,
		LeafPassword: rand.Text(), Log: fleetrig.NewLog(out),
	})
	if err != nil {
		return nil, nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = c.Start(sctx)
	for _, n := range c.Nodes {
		trackPID(n.Pid()) // cleanup ends the nodes too, should the harness end first
	}
	if err != nil {
		return nil, nil, fmt.Errorf("start the nats-server cluster: %w; its last output:\n%s", err, indent(out.tail(20)))
	}
	return c, out, nil
}

// Write adds each line of p to the log: a lineLog is the writer of a
// fleetrig.Log, which writes one whole line at a time.
func (l *lineLog) Write(p []byte) (int, error) {
	for line := range strings.Lines(string(p)) {
		l.add(strings.TrimSuffix(line, "\n"))
	}
	return len(p), nil
}
