package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// messenger measures fan-out (and, with 2 workers, round trips) for yolk, raw
// NATS and the egg baseline, in rounds (runRounds), then the baseline's push
// convergence.
func (h *harness) messenger(ctx context.Context, workers int) {
	// Each round starts fresh processes: an untimed quarter-size run first
	// warms their heaps, buffers and connections (the baseline's first
	// repetition does the same for it).
	specs := slices.Clone(h.cfg.fanout)
	for i := range specs {
		specs[i].Reps, specs[i].Warm = 1, specs[i].N/4
	}
	plan := peerPlan{Workers: workers, Fanout: specs}
	if workers == 2 {
		plan.RTT, plan.Pair = h.cfg.rtt, true
	}
	bargs := h.cfg.baselineRound(workers)
	var yolkRecs, natsRecs, eggRecs []record
	sides := []roundSide{
		{"yolk (bench peers under the real master)", func(int) error {
			recs, err := h.yolkPeers(ctx, plan)
			yolkRecs = append(yolkRecs, recs...)
			return err
		}},
		{"raw NATS", func(int) error {
			recs, err := h.rawNATS(ctx, plan)
			natsRecs = append(natsRecs, recs...)
			return err
		}},
		{"egg baseline (node baseline.js " + strings.Join(bargs.list(), " ") + ")", func(int) error {
			b, err := h.runBaseline(ctx, bargs, baselineWarm)
			eggRecs = append(eggRecs, b.records()...)
			return err
		}},
	}
	errs := h.runRounds(ctx, fmt.Sprintf("messenger, %d workers", workers), h.cfg.roundsFor(workers), sides)
	for i, s := range []struct {
		name, system string
		recs         []record
	}{{"yolk", sysYolk, yolkRecs}, {"raw NATS", sysNATS, natsRecs}, {"egg baseline", sysEgg, eggRecs}} {
		if errs[i] != nil {
			h.fail("messenger: %s, %d workers: %v", s.name, workers, errs[i])
			continue
		}
		fo, rt := aggregate(s.system, workers, s.recs)
		h.res.Fanout = append(h.res.Fanout, fo...)
		h.res.RTT = append(h.res.RTT, rt...)
	}

	pargs := h.cfg.baselinePush(workers)
	h.logf("messenger, %d workers: egg baseline's push convergence (node baseline.js %s)", workers, strings.Join(pargs.list(), " "))
	if b, err := h.runBaseline(ctx, pargs, 0); err != nil {
		h.fail("messenger: egg baseline's push, %d workers: %v", workers, err)
	} else {
		h.res.Converge = append(h.res.Converge, b.Converge...)
	}
}

// yolkPeers runs the real master with this binary as its agent and workers,
// and returns the agent peer's records.
func (h *harness) yolkPeers(ctx context.Context, plan peerPlan) ([]record, error) {
	plan.Out = filepath.Join(h.tmp, fmt.Sprintf("peers-%d-%d.jsonl", plan.Workers, time.Now().UnixNano()))
	pj, err := json.Marshal(plan)
	if err != nil {
		return nil, err
	}
	self := h.bins.path("bench")
	m, err := h.startMaster("master (bench peers)", plan.Workers,
		append([]string{"YOLK_AGENT_BIN=" + self, "YOLK_WORKER_BIN=" + self, "YOLK_PUSH_URL=off",
			// The peers send no heartbeats: the master's watchdog would take
			// them for hung, and replace them, 10s into a slow round.
			"YOLK_HANG_TIMEOUT=0",
			envPeer + "=1", "BENCH_PLAN=" + string(pj)}, append(h.profileEnv(), h.cpuStatEnv()...)...)...)
	if err != nil {
		return nil, err
	}
	defer m.stop()
	if _, err := m.waitReady(ctx); err != nil {
		return nil, err
	}
	if st, err := m.status(ctx); err == nil {
		st.pids()
	}
	deadline := time.Now().Add(h.cfg.planTimeout)
	for {
		b, _ := os.ReadFile(plan.Out)
		recs, done, err := parseRecords(strings.Split(string(b), "\n"))
		switch {
		case err != nil:
			return nil, fmt.Errorf("agent peer: %w; master's last output:\n%s", err, indent(m.p.out.tail(20)))
		case done:
			return recs, nil
		case m.p.exited():
			return nil, fmt.Errorf("the master exited; its last output:\n%s", indent(m.p.out.tail(30)))
		case time.Now().After(deadline):
			return nil, fmt.Errorf("not done within %v (%d records); master's last output:\n%s", h.cfg.planTimeout, len(recs), indent(m.p.out.tail(30)))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// rawNATS runs the plan on an embedded nats-server with plain nats.go
// clients, each in a process of its own, and returns the publisher's records.
func (h *harness) rawNATS(ctx context.Context, plan peerPlan) ([]record, error) {
	self := h.bins.path("bench")
	srv, err := startProc("nats-server", self, []string{"nats-server"}, baseEnv())
	if err != nil {
		return nil, err
	}
	defer srv.stop(5 * time.Second)
	line, err := srv.waitLine(ctx, 20*time.Second, "nats ready")
	if err != nil {
		return nil, err
	}
	url := strings.TrimSpace(strings.TrimPrefix(line, "nats ready"))
	for i := range plan.Workers {
		sub, err := startProc("nats-sub "+strconv.Itoa(i), self, []string{"nats-sub", url, strconv.Itoa(i)}, baseEnv(append(h.profileEnv(), h.cpuStatEnv()...)...))
		if err != nil {
			return nil, err
		}
		defer sub.stop(5 * time.Second)
		if _, err := sub.waitLine(ctx, 20*time.Second, "sub ready"); err != nil {
			return nil, err
		}
	}
	pj, err := json.Marshal(plan)
	if err != nil {
		return nil, err
	}
	pubEnv := h.cpuStatEnv()
	if pubEnv != nil {
		pubEnv = append(pubEnv, envServerPID+"="+strconv.Itoa(srv.pid()))
	}
	pub, err := startProc("nats-pub", self, []string{"nats-pub", url, string(pj)}, baseEnv(pubEnv...))
	if err != nil {
		return nil, err
	}
	defer pub.stop(5 * time.Second)
	select {
	case <-pub.done:
	case <-time.After(h.cfg.planTimeout):
		return nil, fmt.Errorf("publisher not done within %v; its output:\n%s", h.cfg.planTimeout, indent(pub.out.tail(20)))
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	recs, done, err := parseRecords(strings.Split(pub.out.tail(maxLines), "\n"))
	if err == nil && !done {
		err = fmt.Errorf("publisher: %v; its output:\n%s", pub.cmd.ProcessState, indent(pub.out.tail(20)))
	}
	return recs, err
}

// cpuStatEnv passes -cpustat's file to the fan-out senders and receivers.
func (h *harness) cpuStatEnv() []string {
	if h.cfg.cpuStat == "" {
		return nil
	}
	return []string{envCPUStat + "=" + h.cfg.cpuStat}
}

// profileEnv passes -cpuprofile's directory to the fan-out receivers.
func (h *harness) profileEnv() []string {
	if h.cfg.profileDir == "" {
		return nil
	}
	return []string{envProfileDir + "=" + h.cfg.profileDir}
}
