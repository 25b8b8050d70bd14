package yolk

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/internal/cli"
	"github.com/yolkgo/yolk/internal/masterapi"
	"github.com/yolkgo/yolk/prom"
)

// Process is the agent or a worker as its application sees it: the messenger
// (Broadcast, SendToApp, SendToAgent, SendTo, SendRandom, Request,
// RequestAgent, Gather and On, with the delivery promises of package bus), its
// logger, and the hooks of its life.
//
// Register handlers, background work and hooks while App.Agent or App.Worker
// runs; registering a hook later panics. The messenger's methods are safe for
// concurrent use at any time.
//
// A process's life: setup (App.Agent or App.Worker), the functions of [Process.Go]
// start, the [Process.BeforeReady] hooks run, a worker starts serving HTTP,
// the process reports ready to the master, a worker starts taking schedule
// runs and the agent's timers start, the [Process.OnServiceReady] hooks run
// once the whole service is ready. On stop (SIGTERM, the master's order), a
// worker takes no more schedule runs, stops serving and finishes its requests,
// its schedule runs end, the [Process.BeforeClose] hooks run, then the context
// of the Go functions ends and the process exits.
type Process struct {
	// Log is the process's logger, on stderr (YOLK_LOG_LEVEL, YOLK_LOG_FORMAT).
	// In fork mode the records are JSON and the master logs them again with
	// the process's role and id.
	Log *slog.Logger

	conn     *bus.Conn // the runtime's connection
	role     Role
	fleet    cli.Fleet     // the host's fleet (fleet.On() false on a single host)
	stores   []Store       // App.Stores
	reported chan struct{} // closed once the master knows this process is ready
	metrics  *prom.Registry

	mu           sync.Mutex
	sealed       bool
	runs         []func(context.Context) error
	beforeReady  []func(context.Context) error
	serviceReady []func(context.Context)
	beforeClose  []func(context.Context) error
	reconnect    []func()
	states       chan State // the latest State not yet sent to the master
	last         atomic.Pointer[State]
}

// Agent is the agent process: the one process of a service for background
// duties. Its schedule timers are the runtime's; what the application adds is
// in its [Process].
type Agent struct {
	*Process
}

// Worker is a worker process: it serves the application's HTTP handler on the
// port every worker shares.
type Worker struct {
	*Process
	handler http.Handler
	fast    FastLookup
}

// Handle sets the handler the worker serves on the shared HTTP port
// (YOLK_HTTP_ADDR) once its BeforeReady hooks are done, and a worker stops
// accepting on stop, then finishes every request it took. In fork mode the
// workers share the master's socket and take connections in turn; connections
// still queued when one stops go to the others, so a rolling reload fails no
// request. In external mode each worker binds a socket of its own with
// SO_REUSEPORT; connections queued on a stopping worker's socket are reset
// unless the host sets net.ipv4.tcp_migrate_req=1. Without a handler the
// worker answers 404.
func (w *Worker) Handle(h http.Handler) {
	w.register("Handle", func() { w.handler = h })
}

// Role returns the process's role: RoleAgent or RoleWorker.
func (p *Process) Role() Role { return p.role }

// The events the runtime handles itself; [Process.On] refuses them.
const (
	eventSchedule = "schedule" // a schedule run from the agent to workers
)

// On registers h as the handler of event, replacing any; a nil h removes it.
// The events ping, metrics, yolk-ready and schedule are the runtime's own. See
// [bus.Conn.On] for when handlers run.
func (p *Process) On(event string, h bus.Handler) error {
	if err := p.own(event); err != nil {
		return err
	}
	return p.conn.On(event, h)
}

// OnInline is On for a handler that returns at once, never waiting on the
// network or another message: it runs on the bus's delivery goroutine, so a
// request is answered without a goroutine handed over (a shorter round trip),
// one at a time and in order. See [bus.Conn.OnInline].
func (p *Process) OnInline(event string, h bus.Handler) error {
	if err := p.own(event); err != nil {
		return err
	}
	return p.conn.OnInline(event, h)
}

// own refuses the events of the runtime.
func (p *Process) own(event string) error {
	if slices.Contains([]string{masterapi.EventPing, masterapi.EventMetrics, masterapi.EventServiceReady, eventSchedule}, event) {
		return fmt.Errorf("yolk: the event %q is the runtime's own", event)
	}
	return nil
}

// Go runs f on a goroutine of its own from the end of setup until the process
// stops: ctx ends after the BeforeClose hooks, and the process waits for f to
// return before it exits. An error from f other than ctx's stops the process
// (the master restarts it).
func (p *Process) Go(f func(ctx context.Context) error) {
	p.register("Go", func() { p.runs = append(p.runs, f) })
}

// BeforeReady adds a hook that runs before the process reports ready (warm a
// cache, open a connection upstream): a worker starts serving HTTP only after
// every such hook has returned nil. Hooks run in order; ctx ends after
// YOLK_READY_TIMEOUT or when the process stops. An error stops the process.
func (p *Process) BeforeReady(f func(ctx context.Context) error) {
	p.register("BeforeReady", func() { p.beforeReady = append(p.beforeReady, f) })
}

// OnServiceReady adds a hook that runs once, when the whole service is ready:
// the agent and every worker (egg's egg-ready). A process that starts after
// that (a restarted worker) runs it as soon as it is ready itself. It runs on a
// goroutine of its own with a context that ends when the process stops, and
// the process waits for it to return before it exits. It never starts once
// the process is stopping.
func (p *Process) OnServiceReady(f func(ctx context.Context)) {
	p.register("OnServiceReady", func() { p.serviceReady = append(p.serviceReady, f) })
}

// BeforeClose adds a hook that runs when the process stops, after a worker has
// finished its HTTP requests and its schedule runs, and before the context of
// the Go functions ends. Hooks run in reverse order of registration. ctx ends
// YOLK_SHUTDOWN_TIMEOUT after the stop began: a worker's drain and every hook
// share that time (the master kills a process a second after it). An error is
// logged. The hooks also run when the process stops before it was ready.
func (p *Process) BeforeClose(f func(ctx context.Context) error) {
	p.register("BeforeClose", func() { p.beforeClose = append(p.beforeClose, f) })
}

// OnReconnect adds a hook called after the bus connection came back, and after
// the bus dropped messages to this process (a slow consumer): fan-out messages
// sent meanwhile are gone, so catch up on what you need. It must not block.
func (p *Process) OnReconnect(f func()) {
	p.register("OnReconnect", func() { p.reconnect = append(p.reconnect, f) })
}

// Ready returns a channel that is closed once the master knows this process
// is ready (a worker's /readyz can answer with it).
func (p *Process) Ready() <-chan struct{} { return p.reported }

// State is what a process serves, as `master status` shows it: a version (1
// to 256 printable ASCII characters, no space), what brought it (a short
// lowercase word: start, push, pull, ...), when, and in a fleet, the
// process's part in it if it has one (a short lowercase word: leader,
// follower, alone).
type State struct {
	Version   string    `json:"version"`
	By        string    `json:"by"`
	UpdatedAt time.Time `json:"updatedAt"`
	Fleet     string    `json:"fleet,omitempty"`
	// Fetches counts this process's reads of the remote source so far, if it
	// has one: the master's timeline shows the fetches each change cost.
	Fetches uint64 `json:"fetches,omitempty"`
}

// Report tells the master the state this process now serves. It does not
// block: the newest state replaces one not yet sent, and a failed send is
// retried until it is delivered or replaced. A state the master could not show
// (see State) is an error, and is not sent.
func (p *Process) Report(s State) error {
	if err := s.check(); err != nil {
		return err
	}
	p.last.Store(&s)
	p.send(s)
	return nil
}

// check applies the rules the master applies to a report.
func (s State) check() error {
	if err := masterapi.State(s).Check(); err != nil {
		return fmt.Errorf("yolk: report: %w", err)
	}
	return nil
}

// reportAgain sends the last State reported, if any, again.
func (p *Process) reportAgain() {
	if s := p.last.Load(); s != nil {
		p.send(*s)
	}
}

// send puts s in p.states, replacing a State not yet sent.
func (p *Process) send(s State) {
	for {
		select {
		case p.states <- s:
			return
		default:
		}
		select {
		case <-p.states:
		default:
		}
	}
}

// register calls add, which registers a hook, or panics after setup.
func (p *Process) register(what string, add func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sealed {
		panic("yolk: " + what + " called after setup: register hooks in App.Agent or App.Worker")
	}
	add()
}

// seal ends setup: hooks are fixed from now on.
func (p *Process) seal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sealed = true
}

// reconnected calls the OnReconnect hooks.
func (p *Process) reconnected() {
	p.mu.Lock()
	hooks := p.reconnect
	sealed := p.sealed
	p.mu.Unlock()
	if !sealed {
		return
	}
	for _, f := range hooks {
		f()
	}
}
