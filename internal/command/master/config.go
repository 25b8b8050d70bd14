package master

import (
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/yolkgo/yolk/bus/broker"
	"github.com/yolkgo/yolk/internal/cli"
)

type config struct {
	// stores are the application's, for the bus (not from the environment):
	// the host's, and the fleet's.
	stores, fleetStores []broker.Store
	// adminSet: YOLK_ADMIN_ADDR was set. The default address taken by another
	// program is a warning (the service runs without its page), a chosen one an error.
	adminSet bool

	cli.Deploy
	Workers         int           `env:"YOLK_WORKERS" helpDefault:"usable CPUs" help:"workers in fork mode"`
	HTTPAddr        string        `env:"YOLK_HTTP_ADDR" envDefault:":7001" help:"the workers' shared HTTP address"`
	BusURL          string        `env:"YOLK_BUS_URL" helpDefault:"random loopback port (fork), nats://127.0.0.1:4222 (external)" help:"where the bus listens (host must be loopback)"`
	AgentSecret     string        `env:"YOLK_AGENT_SECRET" help:"external mode: the agent's bus secret (required; never printed)"`
	WorkerSecret    string        `env:"YOLK_WORKER_SECRET" help:"external mode: the workers' bus secret (required; never printed)"`
	RunDir          string        `env:"YOLK_RUN_DIR" helpDefault:"run/yolk (fork), /tmp/yolk (external)" help:"state directory, found by master status and reload"`
	ShutdownTimeout time.Duration `env:"YOLK_SHUTDOWN_TIMEOUT" envDefault:"30s" help:"how long each child may take to stop (its drain and BeforeClose hooks) before it is killed, a second later; the workers stop first, then the agent"`
	ReadyTimeout    time.Duration `env:"YOLK_READY_TIMEOUT" envDefault:"30s" help:"how long a child may take to report ready"`
	AgentBin        string        `env:"YOLK_AGENT_BIN" helpDefault:"agent beside the master, or this program" help:"agent executable"`
	WorkerBin       string        `env:"YOLK_WORKER_BIN" helpDefault:"worker beside the master, or this program" help:"worker executable"`
	AdminAddr       string        `env:"YOLK_ADMIN_ADDR" envDefault:"127.0.0.1:7009" help:"the live status page and the service's metrics (GET /metrics), host:port; off: none. It changes nothing, but shows the service to whoever reaches it: keep it on loopback or a private network"`
	HangTimeout     time.Duration `env:"YOLK_HANG_TIMEOUT" envDefault:"10s" help:"a child that answers no heartbeat this long (nor its health socket), or a worker whose HTTP requests in flight made no progress (none completed, wrote or flushed) this long, gets SIGQUIT (its goroutines in the log) and is replaced (a worker through the rolling path, its replacement ready first); at least 1s (the master pings every quarter of it, at most every second); 0: off"`
	WorkerMaxRSS    cli.ByteSize  `env:"YOLK_WORKER_MAX_RSS" helpDefault:"off" help:"a worker whose resident memory stays above this (KiB, MiB, GiB or bytes) for YOLK_WORKER_MAX_RSS_FOR is replaced through the rolling path, without a failed request (a slot whose fresh replacement is above it too is no longer replaced for memory); 0: off"`
	WorkerMaxRSSFor time.Duration `env:"YOLK_WORKER_MAX_RSS_FOR" envDefault:"30s" help:"how long a worker may stay above YOLK_WORKER_MAX_RSS"`
	cli.Fleet
	ClusterUser     string `env:"YOLK_CLUSTER_USER" help:"user of the leaf node link to the cluster (with YOLK_CLUSTER_PASSWORD)"`
	ClusterPassword string `env:"YOLK_CLUSTER_PASSWORD" help:"password of the leaf node link (never printed)"`
	ClusterCreds    string `env:"YOLK_CLUSTER_CREDS" help:"a NATS .creds file for the leaf node link, instead of a user and password"`
	ClusterCA       string `env:"YOLK_CLUSTER_CA" help:"PEM file of the CA of the cluster's certificates, for tls:// URLs; empty: the system's"`
	cli.Logging
}

// validate checks what the types alone do not, and fills the computed defaults:
// the children are this executable when self is set.
func (c *config) validate(self bool) error {
	if err := c.Deploy.Validate(); err != nil {
		return err
	}
	if c.Workers == 0 {
		c.Workers = runtime.GOMAXPROCS(0) // follows a container's CPU quota
	}
	if err := cli.CheckHostPort(c.HTTPAddr); err != nil {
		return cli.BadValue("YOLK_HTTP_ADDR", c.HTTPAddr, "%v", err)
	}
	if c.Workers < 1 || c.Workers > 256 {
		return cli.BadValue("YOLK_WORKERS", strconv.Itoa(c.Workers), "want 1 to 256")
	}
	if c.ShutdownTimeout <= 0 {
		return cli.BadValue("YOLK_SHUTDOWN_TIMEOUT", c.ShutdownTimeout.String(), "must be positive")
	}
	if c.ReadyTimeout <= 0 {
		return cli.BadValue("YOLK_READY_TIMEOUT", c.ReadyTimeout.String(), "must be positive")
	}
	if c.RunDir == "" {
		c.RunDir = "run/yolk"
		if c.External() {
			c.RunDir = "/tmp/yolk" // a container's root may be read-only; /tmp holds the health socket too
		}
	}
	if c.AdminAddr != "off" {
		if err := cli.CheckHostPort(c.AdminAddr); err != nil {
			return cli.BadValue("YOLK_ADMIN_ADDR", c.AdminAddr, "%v (or off)", err)
		}
	}
	if c.HangTimeout < 0 || c.HangTimeout > 0 && c.HangTimeout < cli.MinHangTimeout {
		return cli.BadValue("YOLK_HANG_TIMEOUT", c.HangTimeout.String(), "want 0 (off) or at least %s", cli.MinHangTimeout)
	}
	if c.WorkerMaxRSSFor <= 0 {
		return cli.BadValue("YOLK_WORKER_MAX_RSS_FOR", c.WorkerMaxRSSFor.String(), "must be positive")
	}
	if err := c.Fleet.Check(); err != nil {
		return err
	}
	if c.ClusterCreds != "" && c.ClusterUser != "" {
		return &cli.UsageError{Err: errors.New("YOLK_CLUSTER_CREDS and YOLK_CLUSTER_USER are both set: give one way to log in to the cluster")}
	}
	if c.ClusterCreds != "" {
		if _, err := os.Stat(c.ClusterCreds); err != nil {
			return cli.BadValue("YOLK_CLUSTER_CREDS", c.ClusterCreds, "%v", errors.Unwrap(err))
		}
	}
	if c.BusURL == "" && c.External() {
		c.BusURL = defaultExternalBus
	}
	if _, _, err := c.busAddr(); err != nil {
		return err
	}
	if !c.External() && (c.AgentBin == "" || c.WorkerBin == "") {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		agent, worker := exe, exe
		if !self {
			agent, worker = filepath.Join(filepath.Dir(exe), "agent"), filepath.Join(filepath.Dir(exe), "worker")
		}
		if c.AgentBin == "" {
			c.AgentBin = agent
		}
		if c.WorkerBin == "" {
			c.WorkerBin = worker
		}
	}
	return nil
}

// checkBins checks, in fork mode, that the agent and worker executables are
// there: a wrong path is a bad value, said at once, not a child that cannot start.
func (c *config) checkBins() error {
	for _, b := range []struct{ name, path string }{{"YOLK_AGENT_BIN", c.AgentBin}, {"YOLK_WORKER_BIN", c.WorkerBin}} {
		if _, err := exec.LookPath(b.path); err != nil { // as the supervisor will find it
			return cli.BadValue(b.name, b.path, "%v", errors.Unwrap(err))
		}
	}
	return nil
}

// secrets checks that external mode has both role secrets, and that they
// differ (a worker must not be able to log in as the agent). No error shows a
// secret.
func (c *config) secrets() error {
	if c.AgentSecret == "" {
		return cli.Unset("YOLK_AGENT_SECRET", "external mode needs the agent's bus secret")
	}
	if c.WorkerSecret == "" {
		return cli.Unset("YOLK_WORKER_SECRET", "external mode needs the workers' bus secret")
	}
	if c.AgentSecret == c.WorkerSecret {
		return &cli.UsageError{Err: errors.New("YOLK_AGENT_SECRET and YOLK_WORKER_SECRET are equal: give each role its own secret")}
	}
	return nil
}

// defaultExternalBus is where the bus listens in external mode, where every
// container of the pod shares one network namespace.
const defaultExternalBus = "nats://127.0.0.1:4222"

// busAddr is the host and port the bus listens on: a random loopback port
// unless YOLK_BUS_URL names one (validate sets 127.0.0.1:4222 in external mode).
// The bus never listens beyond loopback.
func (c *config) busAddr() (string, int, error) {
	if c.BusURL == "" {
		return "127.0.0.1", -1, nil
	}
	u, err := url.Parse(c.BusURL)
	if err != nil || u.Scheme != "nats" || u.Hostname() == "" {
		return "", 0, cli.BadValue("YOLK_BUS_URL", c.BusURL, "want nats://127.0.0.1:PORT")
	}
	switch u.Hostname() {
	case "127.0.0.1", "localhost", "::1":
	default:
		return "", 0, cli.BadValue("YOLK_BUS_URL", c.BusURL, "the bus listens on loopback only")
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil || port < 0 || port > 65535 {
		return "", 0, cli.BadValue("YOLK_BUS_URL", c.BusURL, "want a port from 0 to 65535")
	}
	if port == 0 {
		port = -1
	}
	host := u.Hostname()
	if host == "localhost" {
		host = "127.0.0.1"
	}
	return host, port, nil
}
