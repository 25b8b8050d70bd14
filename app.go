package yolk

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"time"

	"github.com/yolkgo/yolk/bus/broker"
	"github.com/yolkgo/yolk/internal/cli"
	"github.com/yolkgo/yolk/internal/command/master"
	"github.com/yolkgo/yolk/schedule"
)

// App is an application: what its agent and its workers run. Every field may
// be left zero: an App{} is a service of workers that answer 404 and an agent
// that does nothing, supervised, reloadable and with a messenger.
//
// The functions are called in the process that plays the role, after Config
// is filled: Schedules in the agent and in each worker, Agent in the agent,
// Worker in each worker. None of them is called in the master.
type App struct {
	// Name names the program in --help; empty means the executable's name.
	Name string
	// About is a paragraph for --help: what the application does.
	About string
	// Config, if not nil, is a pointer to the application's configuration: a
	// struct whose fields carry `env:"NAME"` tags (and `envDefault`, and `help`
	// for --help), read with github.com/caarlos0/env/v11 in every process
	// before anything else runs. If it has a method Validate() error, that is
	// called next. A value that does not parse, or an error from Validate,
	// stops the process with exit code 2 and the error, which should name the
	// variable. In fork mode the master checks it too, so a bad value stops
	// the service before any process starts.
	Config any
	// Schedules returns the application's schedules, each with its task. The
	// agent's timers fire them; workers run the tasks (see [Schedule]). It is
	// called after App.Agent or App.Worker, so a task may use what the
	// worker's setup made; in the agent the tasks are never called.
	Schedules func() []Schedule
	// Agent sets up the agent, the one process of the service for background
	// duties (egg's agent.js): it registers messenger handlers, background work
	// ([Process.Go]) and hooks. An error stops the agent, and at the first start
	// the whole service.
	Agent func(a *Agent) error
	// Worker sets up a worker: its HTTP handler ([Worker.Handle]), messenger
	// handlers, background work and hooks. An error stops the worker.
	Worker func(w *Worker) error
	// Stores are the key-value buckets and object stores the master keeps
	// in memory for the agent and the workers (see [Store]).
	Stores []Store
}

// A Store is a key-value bucket or an object store that the master keeps in
// memory on the bus (NATS JetStream) while the service runs, for state the
// processes share: the agent and the workers open it with
// [Process.KeyValue] or [Process.ObjectStore] and may read, write and watch
// its entries, nothing else. It lives as long as the master: a restarted
// agent or worker finds what was there, a restarted master starts empty.
//
// A key-value entry has a revision that only grows, set by the bus, and an
// update can be made conditional on the revision it replaces
// (jetstream.KeyValue.Update): an order for shared state that no process's
// clock can upset.
type Store struct {
	// Name is the bucket's name: letters, digits, '-' and '_'.
	Name string
	// Objects makes it an object store: large values, chunked, checked with
	// a SHA-256 digest. Else it is a key-value bucket that keeps one value
	// per key.
	Objects bool
	// TTL, if set, expires an entry that long after its last write.
	TTL time.Duration
	// Fleet puts the store on the fleet's NATS cluster (YOLK_CLUSTER_URL),
	// on disk and replicated, shared by every host; the master of each host
	// makes it there if it is missing, once its link is up. Its name must
	// differ from those of the hosts' own stores. On a single host a fleet
	// store does not exist: opening it fails with ErrNoFleet.
	Fleet bool
}

// A Schedule is a job declared once, next to its task. The agent owns the
// timers and dispatches each run: a schedule.Worker run to exactly one worker,
// a schedule.All run to every worker. The worker runs Task with a context that
// ends after Spec.Timeout (see schedule.Spec), never two runs of one schedule
// at once in one process, and logs each run's name, duration and outcome.
type Schedule struct {
	schedule.Spec
	// Task runs in a worker for each run. It should return when ctx is done.
	Task func(ctx context.Context, run schedule.Run) error
}

// Role is a process's part in a service.
type Role string

// The roles. A service has one master, one agent and N workers.
const (
	RoleMaster Role = "master" // serves the bus, starts and supervises the others
	RoleAgent  Role = "agent"  // background duties: the schedule timers, upstream connections
	RoleWorker Role = "worker" // serves HTTP on the shared port
)

// EnvRole is the variable that chooses a one-binary program's role when no
// role is the first argument: the master sets it for the processes it starts.
const EnvRole = "YOLK_ROLE"

// Main runs app as one program that is the master, the agent or a worker by
// how it was started, as Node's cluster does with isPrimary, and exits: 0
// after a clean stop, 2 for a usage error (a bad variable names itself), 1
// otherwise.
//
// Run plainly, the program is the master: it embeds the bus, starts itself
// again as the agent and as each worker, supervises them, reloads the workers
// on SIGHUP and stops everything in order on SIGTERM or SIGINT. A first
// argument of master, agent or worker, or else YOLK_ROLE, chooses the role:
// that is how containers run one role each (YOLK_MODE=external), and how the
// master starts its children. `NAME status`, `NAME reload` and `NAME
// healthcheck` talk to a running master, `NAME worker healthcheck` to a worker.
func Main(app App) { mainAs(app) }

// MainAgent is [Main] for a program that is always the agent: a separate agent
// binary, which a master such as cmd/master starts (YOLK_AGENT_BIN). Its
// binary is half the size of one with Main: the linker leaves the master's
// code out. The master, agent and workers of one service should be built from
// the same App.
func MainAgent(app App) { mainChild(RoleAgent, app.name(), os.Args[1:], app) }

// MainWorker is [Main] for a program that is always a worker: a separate
// worker binary (YOLK_WORKER_BIN), without the master's code.
func MainWorker(app App) { mainChild(RoleWorker, app.name(), os.Args[1:], app) }

// MainMaster is [Main] for a program that is always the master, of separate
// agent and worker binaries: YOLK_AGENT_BIN and YOLK_WORKER_BIN, by default
// agent and worker beside it. In fork mode it checks app's Config before
// anything starts.
func MainMaster(app App) {
	master.Main(app.forMaster(false), os.Args[1:])
	os.Exit(0)
}

func mainAs(app App) {
	role, args, err := pickRole(os.Args[1:], os.Environ())
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", app.name(), err)
		os.Exit(cli.ExitUsage)
	}
	if role == RoleMaster {
		master.Main(app.forMaster(true), args)
		os.Exit(0)
	}
	mainChild(role, app.name()+" "+string(role), args, app)
}

// mainChild runs the agent or a worker with args; cmd is how it was invoked,
// for --help.
func mainChild(role Role, cmd string, args []string, app App) {
	cli.Main(cmd, args, func(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
		return runChild(ctx, app, role, cmd, args, environ, stdout, stderr)
	})
	os.Exit(0)
}

// Run is [Main] without the process's globals, for tests and for programs
// that handle signals themselves: it runs app with args (without the program
// name) and environ, until ctx is done, and returns the error Main would
// print instead of exiting. The master it may run reloads on `reload` requests
// only: Main adds SIGHUP, and a second signal that kills at once.
//
// A master in fork mode starts this same executable again, with YOLK_ROLE set,
// as its agent and workers. In a test that is the test binary: its TestMain
// must then run the app instead of the tests, as this package's own tests do:
//
//	func TestMain(m *testing.M) {
//		if os.Getenv(yolk.EnvRole) != "" {
//			yolk.Main(app) // never returns
//		}
//		os.Exit(m.Run())
//	}
func Run(ctx context.Context, app App, args, environ []string, stdout, stderr io.Writer) error {
	role, args, err := pickRole(args, environ)
	if err != nil {
		return err
	}
	if role == RoleMaster {
		return master.Run(ctx, app.forMaster(true), args, environ, stdout, stderr)
	}
	return runChild(ctx, app, role, app.name()+" "+string(role), args, environ, stdout, stderr)
}

// pickRole returns the role a program plays: its first argument if that
// names a role, else YOLK_ROLE, else master.
func pickRole(args, environ []string) (Role, []string, error) {
	roles := []Role{RoleMaster, RoleAgent, RoleWorker}
	if len(args) > 0 && slices.Contains(roles, Role(args[0])) {
		return Role(args[0]), args[1:], nil
	}
	v := cli.Getenv(environ, EnvRole)
	switch {
	case v == "":
		return RoleMaster, args, nil
	case slices.Contains(roles, Role(v)):
		return Role(v), args, nil
	}
	return "", nil, cli.BadValue(EnvRole, v, "want master, agent or worker")
}

func (app App) name() string {
	if app.Name != "" {
		return app.Name
	}
	if len(os.Args) > 0 {
		return filepath.Base(os.Args[0])
	}
	return "yolk"
}

// forMaster is what the master knows of app: its name, its config (for --help
// and to check it before anything starts) and whether the children are this
// program.
func (app App) forMaster(self bool) master.App {
	return master.App{
		Name:   app.name(),
		About:  app.About,
		Config: app.Config,
		Check:  func(environ []string) error { return parseAppConfig(app.Config, environ) },
		Self:   self,
		Stores: app.brokerStores(false),
		Fleet:  app.brokerStores(true),
	}
}

// brokerStores returns the host's stores, or the fleet's.
func (app App) brokerStores(fleet bool) []broker.Store {
	var out []broker.Store
	for _, s := range app.Stores {
		if s.Fleet == fleet {
			out = append(out, broker.Store{Name: s.Name, Objects: s.Objects, TTL: s.TTL})
		}
	}
	return out
}

// parseAppConfig fills cfg (a pointer to a struct, or nil) from environ and
// validates it.
func parseAppConfig(cfg any, environ []string) error {
	if cfg == nil {
		return nil
	}
	if t := reflect.TypeOf(cfg); t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct || reflect.ValueOf(cfg).IsNil() {
		return fmt.Errorf("yolk: App.Config is a %s, want a non-nil pointer to a struct", t)
	}
	if err := cli.ParseInto(cfg, environ); err != nil {
		return err
	}
	if v, ok := cfg.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			return &cli.UsageError{Err: err}
		}
	}
	return nil
}

// notFound is a worker's handler when the application sets none.
var notFound http.Handler = http.NotFoundHandler()
