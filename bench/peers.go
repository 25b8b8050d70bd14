package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/internal/cli"
	"github.com/yolkgo/yolk/internal/lifeline"
	"github.com/yolkgo/yolk/internal/masterapi"
	"github.com/yolkgo/yolk/supervisor"
)

// The yolk peers: this binary run by the real master as its agent and its
// workers (YOLK_AGENT_BIN, YOLK_WORKER_BIN), with BENCH_PEER=1. They log in
// with the credential the master minted, report ready as the real agent and
// workers do, and then the agent peer measures fan-out (SendToApp) and round
// trips (RequestAgent; SendToAgent + SendTo) and writes the records to the
// file BENCH_PLAN names.

// envPeer marks a process started by the master as a bench peer.
const envPeer = "BENCH_PEER"

// peerPlan is what the agent peer measures; the harness passes it as JSON in
// BENCH_PLAN (the master hands its environment down to its children).
type peerPlan struct {
	Workers int       `json:"workers"`
	Fanout  []fanSpec `json:"fanout"`
	RTT     rttSpec   `json:"rtt"`
	Pair    bool      `json:"pair"` // also measure SendToAgent + SendTo
	Out     string    `json:"out"`  // the file the agent peer appends records to
}

type peerConfig struct {
	cli.Deploy
	cli.Bus
	Plan string `env:"BENCH_PLAN"`
}

// runPeer runs this process as the agent or a worker peer, as YOLK_ROLE (set
// by the supervisor) says.
func runPeer(ctx context.Context, environ []string) error {
	cfg, err := cli.Parse[peerConfig](environ)
	if err != nil {
		return err
	}
	plan, err := decodePlan(cfg.Plan)
	if err != nil {
		return fmt.Errorf("BENCH_PLAN: %w", err)
	}
	role := bus.Role(os.Getenv(supervisor.EnvRole))
	if role != bus.RoleAgent && role != bus.RoleWorker {
		return fmt.Errorf("bench peer: %s=%q, want agent or worker", supervisor.EnvRole, role)
	}
	if err := cfg.Join(&cfg.Bus, role, "BENCH_SECRET", "", 30*time.Second); err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).
		With("proc", "bench-"+string(role), "id", cfg.ID)
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	conn, err := bus.Dial(dctx, bus.Options{URL: cfg.URL, User: cfg.User, Password: cfg.Secret, ID: cfg.ID, Role: role, Logger: log})
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close()

	ctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop() // runs first: ends the goroutines wg waits for
	if role == bus.RoleAgent {
		err = agentPeer(ctx, conn, plan, &wg, log)
	} else {
		err = workerPeer(ctx, conn, &wg, log)
	}
	if err != nil {
		return err
	}
	// Report ready as package yolk's children do, which also tells the
	// wire version to send.
	reads, err := peerWire(environ)
	if err != nil {
		return err
	}
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	m, err := conn.RequestMaster(rctx, masterapi.EventReady, masterapi.Ready{Wire: reads})
	rcancel()
	if err != nil {
		return fmt.Errorf("report ready: %w", err)
	}
	var r masterapi.ReadyReply
	if err := m.Decode(&r); err != nil {
		return fmt.Errorf("report ready: %w", err)
	}
	if err := conn.SetWire(max(r.Wire, 1)); err != nil {
		return fmt.Errorf("report ready: %w", err)
	}
	select {
	case <-ctx.Done():
	case <-lifeline.Watch(environ):
	case <-conn.Done():
	}
	return nil
}

// agentPeer registers the agent's handlers and, on a goroutine that wg
// tracks, runs the plan once the master has broadcast yolk-ready.
func agentPeer(ctx context.Context, conn *bus.Conn, plan peerPlan, wg *sync.WaitGroup, log *slog.Logger) error {
	tracker := newFanTracker()
	allReady := make(chan struct{})
	var once sync.Once
	handlers := map[string]bus.Handler{
		"yolk-ready": func(context.Context, bus.Message) (any, error) {
			once.Do(func() { close(allReady) })
			return nil, nil
		},
		"ping": func(_ context.Context, m bus.Message) (any, error) { return m.Data, nil },
		"ping2": func(ctx context.Context, m bus.Message) (any, error) {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			return nil, conn.SendTo(sctx, m.From, "pong2", m.Data)
		},
		"fan-progress": func(_ context.Context, m bus.Message) (any, error) {
			var p fanProgress
			if err := m.Decode(&p); err != nil {
				return nil, err
			}
			tracker.onProgress(m.From, p)
			return nil, nil
		},
		"fan-ack": func(_ context.Context, m bus.Message) (any, error) {
			var a fanAck
			if err := m.Decode(&a); err != nil {
				return nil, err
			}
			tracker.onAck(m.From, a)
			return nil, nil
		},
	}
	for event, h := range handlers {
		on := conn.On
		if event == "ping" {
			on = conn.OnInline // an echo: it answers at once, as raw NATS's responder does
		}
		if err := on(event, h); err != nil {
			return err
		}
	}
	out, err := os.OpenFile(plan.Out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	wg.Go(func() {
		defer out.Close()
		enc := json.NewEncoder(out)
		err := runPlan(ctx, conn, plan, tracker, allReady, func(r record) { enc.Encode(r) })
		if err != nil {
			log.Error("bench plan", "err", err)
			enc.Encode(record{Test: "error", Error: err.Error()})
			return
		}
		enc.Encode(record{Test: "done"})
	})
	return nil
}

// runPlan waits until every process is ready, then measures.
func runPlan(ctx context.Context, conn *bus.Conn, plan peerPlan, t *fanTracker, allReady <-chan struct{}, emit func(record)) error {
	select {
	case <-allReady:
	case <-time.After(60 * time.Second):
		return errors.New("no yolk-ready from the master within 60s")
	case <-ctx.Done():
		return ctx.Err()
	}
	workers, err := helloAll(ctx, conn, plan.Workers)
	if err != nil {
		return err
	}
	if err := runFanPlan(ctx, plan, t, emit, func(size int) fanSender {
		return &busSender{conn: conn, payload: jsonString(size)}
	}); err != nil {
		return err
	}
	variants := []string{rttRequest}
	if plan.Pair {
		variants = append(variants, rttSendPair)
	}
	for _, v := range variants {
		for rep := range plan.RTT.Reps {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			m, err := conn.Request(rctx, workers[0], "rtt-run", rttRun{Variant: v, N: plan.RTT.N, Warm: plan.RTT.Warm})
			cancel()
			if err != nil {
				return fmt.Errorf("round trip %s, run %d: %w", v, rep+1, err)
			}
			var q Quantiles
			if err := m.Decode(&q); err != nil {
				return err
			}
			emit(record{Test: "rtt", Variant: v, Rep: rep + 1, N: q.N, RTT: &q})
		}
	}
	return nil
}

// helloAll asks every worker for its id until want of them have answered.
func helloAll(ctx context.Context, conn *bus.Conn, want int) ([]string, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		gctx, cancel := context.WithTimeout(ctx, time.Second)
		replies, err := conn.Gather(gctx, "hello", nil, want)
		cancel()
		if len(replies) == want {
			ids := make([]string, len(replies))
			for i, r := range replies {
				ids[i] = r.From
			}
			return ids, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("hello: %d of %d workers answered (%v)", len(replies), want, err)
		}
	}
}

// busSender sends fan-out messages with SendToApp.
type busSender struct {
	conn    *bus.Conn
	payload []byte
}

func (s *busSender) begin(b fanBegin) error          { return s.conn.SendToApp("fan-begin", b) }
func (s *busSender) system() string                  { return "yolk" }
func (s *busSender) send() error                     { return s.conn.SendToApp("fan-msg", s.payload) }
func (s *busSender) end(run int) error               { return s.conn.SendToApp("fan-end", run) }
func (s *busSender) flush(ctx context.Context) error { return s.conn.Flush(ctx) }

// workerPeer registers a worker's handlers; its progress reporter runs on a
// goroutine that wg tracks, until ctx ends.
func workerPeer(ctx context.Context, conn *bus.Conn, wg *sync.WaitGroup, log *slog.Logger) error {
	progress := make(chan fanProgress, 1)
	counter := &fanCounter{report: func(p fanProgress) { latest(progress, p) }, profile: "yolk-worker"}
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case p := <-progress:
				sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				if err := conn.SendToAgent(sctx, "fan-progress", p); err != nil && ctx.Err() == nil {
					log.Warn("report progress", "err", err)
				}
				cancel()
			}
		}
	})
	pong := make(chan struct{}, 1)
	handlers := map[string]bus.Handler{
		"hello": func(context.Context, bus.Message) (any, error) { return conn.ID(), nil },
		"fan-begin": func(_ context.Context, m bus.Message) (any, error) {
			var b fanBegin
			if err := m.Decode(&b); err != nil {
				return nil, err
			}
			counter.begin(b)
			return nil, nil
		},
		"fan-msg": func(context.Context, bus.Message) (any, error) {
			counter.msg()
			return nil, nil
		},
		"fan-end": func(ctx context.Context, m bus.Message) (any, error) {
			var run int
			if err := m.Decode(&run); err != nil {
				return nil, err
			}
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			return nil, conn.SendToAgent(sctx, "fan-ack", counter.ack(run))
		},
		"pong2": func(context.Context, bus.Message) (any, error) {
			latest(pong, struct{}{})
			return nil, nil
		},
		"rtt-run": func(ctx context.Context, m bus.Message) (any, error) {
			var r rttRun
			if err := m.Decode(&r); err != nil {
				return nil, err
			}
			trip := func(ctx context.Context) error {
				_, err := conn.RequestAgent(ctx, "ping", rttPayload)
				return err
			}
			if r.Variant == rttSendPair {
				trip = func(ctx context.Context) error {
					if err := conn.SendToAgent(ctx, "ping2", rttPayload); err != nil {
						return err
					}
					select {
					case <-pong:
						return nil
					case <-ctx.Done():
						return fmt.Errorf("no pong2: %w", ctx.Err())
					}
				}
			}
			return measureRTT(ctx, r.Warm, r.N, trip)
		},
	}
	for event, h := range handlers {
		if err := conn.On(event, h); err != nil {
			return err
		}
	}
	return nil
}

// envPeerWire, set to a wire version below bus.WireVersion (with -yolk-env),
// makes the peers say they read no later one, so that the service sends it:
// BENCH_WIRE=2 measures yolk without batches.
const envPeerWire = "BENCH_WIRE"

// peerWire is the wire version the peers say they read.
func peerWire(environ []string) (int, error) {
	v := cli.Getenv(environ, envPeerWire)
	if v == "" {
		return bus.WireVersion, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > bus.WireVersion {
		return 0, fmt.Errorf("%s=%q: want a wire version from 1 to %d", envPeerWire, v, bus.WireVersion)
	}
	return n, nil
}

// decodePlan reads a peer plan given as JSON on the command line.
func decodePlan(s string) (peerPlan, error) {
	var p peerPlan
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		return p, fmt.Errorf("plan: %w", err)
	}
	if p.Workers < 1 {
		return p, fmt.Errorf("plan: %d workers", p.Workers)
	}
	return p, nil
}
