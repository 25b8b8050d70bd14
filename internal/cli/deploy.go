package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/internal/health"
)

// Modes of YOLK_MODE.
const (
	ModeFork     = "fork"     // the master starts the agent and the workers
	ModeExternal = "external" // the platform (compose, Kubernetes) starts every process
)

// DefaultHealthSocket is where a process serves its health in external mode
// unless YOLK_HEALTH_SOCKET says otherwise.
const DefaultHealthSocket = "/tmp/yolk-health.sock"

// maxSocketPath is the longest path a unix socket may have on Linux (sun_path
// is 108 bytes with its terminating NUL).
const maxSocketPath = 107

// Deploy is the part of every command's config that says who starts the
// processes and where a process answers its health probes.
type Deploy struct {
	Mode         string `env:"YOLK_MODE" envDefault:"fork" help:"fork (the master starts the agent and workers) or external (the platform does: compose, Kubernetes)"`
	HealthSocket string `env:"YOLK_HEALTH_SOCKET" helpDefault:"/tmp/yolk-health.sock (external), off (fork)" help:"unix socket serving GET /healthz and /readyz for this process's healthcheck; off: none"`
}

// Validate checks the mode and the socket path.
func (d Deploy) Validate() error {
	if d.Mode != ModeFork && d.Mode != ModeExternal {
		return BadValue("YOLK_MODE", d.Mode, "want fork or external")
	}
	if p := d.HealthPath(); len(p) > maxSocketPath {
		return BadValue("YOLK_HEALTH_SOCKET", d.HealthSocket, "a unix socket path has at most %d bytes", maxSocketPath)
	}
	return nil
}

// External reports whether the platform, not the master, starts the processes.
func (d Deploy) External() bool { return d.Mode == ModeExternal }

// HealthPath is the health socket's path, or "" when there is none.
func (d Deploy) HealthPath() string {
	switch {
	case d.HealthSocket == "off":
		return ""
	case d.HealthSocket != "":
		return d.HealthSocket
	case d.External():
		return DefaultHealthSocket
	}
	return ""
}

// ProcessID is a process's id on the bus: id when set, else its pid in fork
// mode and <role>-<8 random hex digits> in external mode, where every
// container's process may be pid 1.
func (d Deploy) ProcessID(role, id string) string {
	if id != "" {
		return id
	}
	if !d.External() {
		return strconv.Itoa(os.Getpid())
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return role + "-" + hex.EncodeToString(b)
}

// Unset returns a *UsageError for a required variable that is missing or
// empty. It never shows a value: use it for secrets.
func Unset(name, why string) error {
	return &UsageError{Err: fmt.Errorf("%s is not set: %s", name, why)}
}

// HealthcheckCommand runs the `healthcheck [--ready]` subcommand of a process
// configured by environ: it asks the process serving YOLK_HEALTH_SOCKET.
func HealthcheckCommand(ctx context.Context, args, environ []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stdout)
	ready := fs.Bool("ready", false, "ask GET /readyz (ready to serve) instead of GET /healthz (alive)")
	if err := fs.Parse(args); err != nil {
		return Usagef("healthcheck: %v", err)
	}
	if fs.NArg() > 0 {
		return Usagef("healthcheck: unexpected argument %q", fs.Arg(0))
	}
	d, err := Parse[Deploy](environ)
	if err != nil {
		return err
	}
	if err := d.Validate(); err != nil {
		return err
	}
	path := d.HealthPath()
	if path == "" {
		return errors.New("healthcheck: no health socket (YOLK_HEALTH_SOCKET is off, or unset in fork mode)")
	}
	return health.Check(ctx, path, *ready, stdout)
}

// StartHealth binds the health socket d names, if any, and serves it (see
// [health.Server.Serve]) on a goroutine of its own until stop is called; stop
// closes the socket, removes its file and waits. With no socket it does
// nothing and stop is a no-op.
func (d Deploy) StartHealth(ready func() error, log *slog.Logger) (stop func(), err error) {
	return d.StartHealthChecks(HealthChecks{Ready: ready}, log)
}

// HealthChecks are what a health socket answers: see [health.Server.ServeChecks].
type HealthChecks struct {
	// Live fails GET /healthz (503, and /readyz with it) when the process
	// runs but is stuck; nil: alive while it runs.
	Live func() error
	// Ready fails GET /readyz.
	Ready func() error
	// Note is the text of a 200 GET /healthz instead of "ok": how a live
	// process finds the service (see [health.Server.Note]).
	Note func() string
}

// StartHealthChecks is [Deploy.StartHealth] with every check of hc.
func (d Deploy) StartHealthChecks(hc HealthChecks, log *slog.Logger) (stop func(), err error) {
	path := d.HealthPath()
	if path == "" {
		return func() {}, nil
	}
	hs, err := health.Listen(path)
	if errors.Is(err, health.ErrNotSocket) || errors.Is(err, health.ErrInUse) {
		return nil, BadValue("YOLK_HEALTH_SOCKET", path, "%v", err)
	}
	if err != nil {
		return nil, err
	}
	hs.Note = hc.Note
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := hs.ServeChecks(ctx, hc.Live, hc.Ready, log); err != nil {
			log.Error("health socket stopped", "path", path, "err", err)
		}
	})
	return func() { cancel(); wg.Wait() }, nil
}

// Join checks a child's deployment settings and completes its bus login: the
// credential the master set (fork mode), or the role's name and the secret read from
// secretVar (external mode). It also settles the process's id.
func (d Deploy) Join(b *Bus, role bus.Role, secretVar, secret string, readyTimeout time.Duration) error {
	if err := d.Validate(); err != nil {
		return err
	}
	if readyTimeout <= 0 {
		return BadValue("YOLK_READY_TIMEOUT", readyTimeout.String(), "must be positive")
	}
	if err := checkBusURL(b.URL); err != nil {
		return err
	}
	if d.External() {
		if secret == "" {
			return Unset(secretVar, "external mode needs the "+string(role)+"'s bus secret")
		}
		b.User, b.Secret = string(role), secret
	} else {
		// without them the bus refuses this process, or (no master) it waits for ever
		if b.User == "" {
			return Unset("YOLK_BUS_USER", "in fork mode the master sets it: run the master, or set YOLK_MODE=external")
		}
		if b.Secret == "" {
			return Unset("YOLK_BUS_SECRET", "in fork mode the master sets it: run the master, or set YOLK_MODE=external")
		}
	}
	b.ID = d.ProcessID(string(role), b.ID)
	if err := bus.ValidID(b.ID); err != nil {
		return BadValue("YOLK_ID", b.ID, "%v", err)
	}
	if prefix := string(role) + "-"; d.External() && !strings.HasPrefix(b.ID, prefix) {
		// the bus admits a role's secret only with such ids: a worker cannot take the agent's
		return BadValue("YOLK_ID", b.ID, "in external mode the id of a %s starts with %s", role, prefix)
	}
	return nil
}

// checkBusURL checks YOLK_BUS_URL as a process that dials the bus reads it: one
// URL, or several separated by commas, each nats:// or tls:// with a host and,
// if any, a port from 1 to 65535. The error shows the URL without its password.
func checkBusURL(s string) error {
	for one := range strings.SplitSeq(s, ",") {
		u, err := url.Parse(strings.TrimSpace(one))
		if err != nil {
			return BadValue("YOLK_BUS_URL", s, "want nats://host:port")
		}
		if (u.Scheme != "nats" && u.Scheme != "tls") || u.Hostname() == "" || u.Opaque != "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return BadValue("YOLK_BUS_URL", u.Redacted(), "want nats://host:port")
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
				return BadValue("YOLK_BUS_URL", u.Redacted(), "want a port from 1 to 65535")
			}
		}
	}
	return nil
}

// Child is what the agent and the workers read of the environment, besides
// their application's own config.
type Child struct {
	Deploy
	Bus
	Fleet
	ReadyTimeout    time.Duration `env:"YOLK_READY_TIMEOUT" envDefault:"30s" help:"how long the BeforeReady hooks may take, and each try to report ready (external mode: it tries until it succeeds)"`
	ShutdownTimeout time.Duration `env:"YOLK_SHUTDOWN_TIMEOUT" envDefault:"30s" help:"how long in-flight requests and the BeforeClose hooks may take on stop"`
	Logging
}

// Check checks what the types alone do not and completes the bus login (see
// [Deploy.Join]) of a process of role, whose role secret is in secretVar.
func (c *Child) Check(role bus.Role, secretVar, secret string) error {
	if err := c.Logging.Validate(); err != nil {
		return err
	}
	if c.ShutdownTimeout <= 0 {
		return BadValue("YOLK_SHUTDOWN_TIMEOUT", c.ShutdownTimeout.String(), "must be positive")
	}
	if err := c.Fleet.Check(); err != nil {
		return err
	}
	return c.Join(&c.Bus, role, secretVar, secret, c.ReadyTimeout)
}
