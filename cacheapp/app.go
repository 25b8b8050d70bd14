// Package cacheapp is the cache application, the example of egg's cluster
// docs, written on package yolk alone: every worker serves a data set from
// its memory, kept fresh from a remote source three ways (force, pull, push),
// with one remote fetch per change for the whole service. The agent holds the
// service's copy and the upstream connection (the source's change feed); the
// workers hold replicas and serve them over HTTP. cmd/agent, cmd/worker and
// cmd/master run it as separate binaries; cmd/yolk as one.
//
// It is also the example to copy for a service of one's own: [New] returns
// the yolk.App, and each part of it is a method of one small struct.
package cacheapp

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/yolkgo/yolk"
	"github.com/yolkgo/yolk/cache"
	"github.com/yolkgo/yolk/schedule"
)

const about = `The cache application: every worker serves the remote source's data set
from its memory (GET /data, /data/{key}, /metrics, /healthz, /readyz), kept
fresh by push (the source's change feed), pull_refresh and force_refresh.`

// app is the cache application's state in one process: the agent's hub, or a
// worker's replica.
type app struct {
	cfg Config
	rep *cache.Replica // a worker's; nil in the agent
}

// New returns the cache application.
func New() yolk.App {
	a := &app{}
	return yolk.App{
		About:     about,
		Config:    &a.cfg,
		Schedules: a.schedules,
		Agent:     a.agent,
		Worker:    a.worker,
		Stores: []yolk.Store{
			{Name: cache.Bucket}, {Name: cache.ObjectStore, Objects: true},
			{Name: cache.FleetBucket, Fleet: true}, {Name: cache.FleetObjectStore, Objects: true, Fleet: true},
		},
	}
}

// fleetShared is the fleet's shared snapshot, on the cluster, opened when
// the cluster is first reached.
func fleetShared(p *yolk.Process) *cache.Shared {
	return cache.OpenShared(func(ctx context.Context) (jetstream.KeyValue, jetstream.ObjectStore, error) {
		kv, err := p.KeyValue(ctx, cache.FleetBucket)
		if err != nil {
			return nil, nil, err
		}
		obj, err := p.ObjectStore(ctx, cache.FleetObjectStore)
		if err != nil {
			return nil, nil, err
		}
		return kv, obj, nil
	})
}

// shared opens the service's shared snapshot, in the master's stores.
func shared(ctx context.Context, p *yolk.Process) (*cache.Shared, error) {
	kv, err := p.KeyValue(ctx, cache.Bucket)
	if err != nil {
		return nil, err
	}
	obj, err := p.ObjectStore(ctx, cache.ObjectStore)
	if err != nil {
		return nil, err
	}
	return cache.NewShared(kv, obj), nil
}

// schedules are the two refresh schedules: force_refresh in every worker,
// pull_refresh in one. Their tasks run in workers, on the worker's replica.
func (a *app) schedules() []yolk.Schedule {
	var out []yolk.Schedule
	for _, spec := range cache.Schedules(a.cfg.ForceInterval, a.cfg.PullInterval) {
		task := func(ctx context.Context, r schedule.Run) error { return a.rep.Pull(ctx) }
		if spec.Name == cache.ForceRefresh {
			task = func(ctx context.Context, r schedule.Run) error { return a.rep.Force(ctx, r.Seq) }
		}
		out = append(out, yolk.Schedule{Spec: spec, Task: task})
	}
	return out
}

// agent reads the remote for the whole service (the hub) and follows the
// source's change feed. It is ready once the hub has tried the remote.
func (a *app) agent(ag *yolk.Agent) error {
	hub := cache.NewHub(ag, a.cfg.source(), ag.Log)
	hub.Metrics = cache.NewMetrics(ag.Metrics())
	// master status and its timeline show what the agent read, and what each
	// change cost the remote
	report := func(part string, s *cache.Snapshot) {
		if s == nil {
			return
		}
		if err := ag.Report(yolk.State{Version: s.Version, By: s.By, UpdatedAt: s.UpdatedAt, Fleet: part, Fetches: hub.Fetches()}); err != nil {
			ag.Log.Warn("status", "err", err)
		}
	}
	hub.OnUpdate = func(s *cache.Snapshot) { report(hub.Part(), s) }
	if ag.Host() != "" {
		// A fleet: one agent reads the remote for every host (see cache.Fleet).
		l, err := ag.Lease(cache.FleetLease)
		if err != nil {
			return err
		}
		hub.Fleet = &cache.Fleet{Shared: fleetShared(ag.Process), Lease: l, OnPart: report}
	}
	warm := make(chan struct{})
	ag.Go(func(ctx context.Context) error {
		sh, err := shared(ctx, ag.Process)
		if err != nil {
			return err
		}
		return hub.Run(ctx, sh, func() { close(warm) })
	})
	ag.BeforeReady(func(ctx context.Context) error {
		select {
		case <-warm:
		case <-ctx.Done():
			return ctx.Err()
		}
		if s := hub.Load(); s != nil {
			ag.Log.Info("cache warm", "version", s.Version)
		} else if hub.Part() == cache.PartFollower {
			ag.Log.Info("ready; the fleet's leader reads the remote for this host")
		} else {
			ag.Log.Warn("ready without data: the remote source has not answered yet")
		}
		return nil
	})
	ag.OnReconnect(hub.Reconnected) // the master may have restarted, its stores empty
	if !a.cfg.pushOn() {
		ag.Log.Info("push refresh is off")
		return nil
	}
	ag.Go(func(ctx context.Context) error {
		select { // follow the feed once the hub has a first answer
		case <-warm:
		case <-ctx.Done():
			return nil
		}
		return cache.WatchFeed(ctx, a.cfg.PushURL, a.cfg.PushSubject, ag.Log, hub.Changed, hub.Resync)
	})
	return nil
}

// worker keeps a replica of the agent's snapshot and serves it. It is ready
// once the replica holds data: no request is served from an empty cache.
func (a *app) worker(w *yolk.Worker) error {
	var store cache.Store
	metrics := cache.NewMetrics(w.Metrics())
	a.rep = cache.NewReplica(w, a.cfg.source(), &store, metrics, w.Log)
	a.rep.PullEvery = a.cfg.PullInterval // while the agent is away, its timers with it
	a.rep.OnUpdate = func(s *cache.Snapshot) {
		if err := w.Report(yolk.State{Version: s.Version, By: s.By, UpdatedAt: s.UpdatedAt, Fetches: a.rep.Fetches()}); err != nil {
			w.Log.Warn("status", "err", err)
		}
	}
	w.OnReconnect(a.rep.Reconnected) // read the shared snapshot again
	warm := make(chan struct{})
	w.Go(func(ctx context.Context) error {
		sh, err := shared(ctx, w.Process)
		if err != nil {
			return err
		}
		return a.rep.Run(ctx, sh, func() { close(warm) })
	})
	w.BeforeReady(func(ctx context.Context) error {
		select {
		case <-warm:
			w.Log.Info("cache warm", "version", store.Load().Version)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	w.Handle(routes(w, &store, metrics))
	w.HandleFast(cache.NewFastLookup(&store, w.ID(), metrics)) // GET /data/{key} of a key the snapshot holds
	return nil
}

// routes is the worker's HTTP API: the data set, its metrics, and probes.
// Every response carries X-Yolk-Version and X-Yolk-Worker.
func routes(w *yolk.Worker, store *cache.Store, metrics *cache.Metrics) http.Handler {
	id := w.ID()
	headers := func(h http.HandlerFunc) http.Handler { return cache.WithHeaders(store, id, h) }
	mux := http.NewServeMux()
	data := cache.NewHandler(store, id, metrics)
	mux.Handle("/data", data)
	mux.Handle("/data/", data)
	mux.Handle("GET /metrics", cache.WithHeaders(store, id, w.MetricsHandler()))
	mux.Handle("GET /healthz", headers(func(rw http.ResponseWriter, r *http.Request) {
		io.WriteString(rw, "ok\n")
	}))
	mux.Handle("GET /readyz", headers(func(rw http.ResponseWriter, r *http.Request) {
		select {
		case <-w.Ready():
			io.WriteString(rw, "ready\n")
		default:
			http.Error(rw, "not ready", http.StatusServiceUnavailable)
		}
	}))
	mux.Handle("GET /{$}", headers(func(rw http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(rw, "yolk worker %s\n", id)
	}))
	// The data set's reads are nearly every request: they go straight to its
	// handler when the mux would send them there as they are (a clean path).
	// The mux's matching costs about 350 ns and 5 allocations a request.
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; strings.HasPrefix(p, "/data/") && path.Clean(p) == p {
			data.ServeHTTP(rw, r)
			return
		}
		mux.ServeHTTP(rw, r)
	})
}
