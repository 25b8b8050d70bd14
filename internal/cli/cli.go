// Package cli holds what yolk's processes share at their edges: their configuration
// from the environment (parsing, with errors that name the variable; --help from the
// same structs; the deployment settings and the bus login they complete), the slog
// logger, the `healthcheck` subcommand, and Main, which turns a usage error into exit
// code 2. The health socket itself is package health.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/signal"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/caarlos0/env/v11"
)

// ExitUsage is the exit code for a bad command line or a bad environment variable.
const ExitUsage = 2

// UsageError is an error in how a command was invoked: a bad flag or a bad
// environment value. Mains exit with ExitUsage when they see one.
type UsageError struct {
	Var   string // the environment variable, if any
	Value string // its value as given
	Err   error
}

func (e *UsageError) Error() string {
	if e.Var == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("%s=%q: %v", e.Var, e.Value, e.Err)
}

func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a *UsageError for a bad command line.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// BadValue returns a *UsageError naming the variable and the value it held.
func BadValue(name, value string, format string, args ...any) error {
	return &UsageError{Var: name, Value: value, Err: fmt.Errorf(format, args...)}
}

// MinHangTimeout is the least YOLK_HANG_TIMEOUT but 0 (off), for the master
// and the workers alike: the master pings its children every quarter of it,
// and never more often than every 250ms, so that a child counts as silent
// only after a few missed heartbeats.
const MinHangTimeout = time.Second

// Parse reads T from environ (KEY=VALUE strings) using the `env` and `envDefault`
// struct tags. Only environ is read, never the process environment. A value that does
// not parse is a *UsageError naming the variable and the value.
func Parse[T any](environ []string) (T, error) {
	vars := env.ToMap(environ)
	cfg, err := env.ParseAsWithOptions[T](env.Options{Environment: vars})
	if err == nil {
		return cfg, nil
	}
	return cfg, usageError(err, reflect.TypeFor[T](), vars)
}

// Getenv returns the value of key in environ, "" if it is unset; of several,
// the last one, as exec does.
func Getenv(environ []string, key string) string { return env.ToMap(environ)[key] }

// ParseInto is [Parse] into ptr, a pointer to a struct with `env` tags.
func ParseInto(ptr any, environ []string) error {
	vars := env.ToMap(environ)
	err := env.ParseWithOptions(ptr, env.Options{Environment: vars})
	if err == nil {
		return nil
	}
	return usageError(err, reflect.TypeOf(ptr).Elem(), vars)
}

// usageError turns an error of package env parsing type t into a *UsageError.
func usageError(err error, t reflect.Type, vars map[string]string) error {
	keys := envKeys(t)
	var agg env.AggregateError
	if errors.As(err, &agg) && len(agg.Errors) > 0 {
		var perr env.ParseError
		if errors.As(agg.Errors[0], &perr) {
			key := keys[perr.Name]
			return &UsageError{Var: key, Value: vars[key], Err: unwrapAll(perr.Err)}
		}
		return &UsageError{Err: agg.Errors[0]}
	}
	return &UsageError{Err: err}
}

// unwrapAll drops the layers of strconv and time wrapping to the short reason.
func unwrapAll(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}

// envKeys maps a struct's field names to their environment variable names.
func envKeys(t reflect.Type) map[string]string {
	keys := make(map[string]string)
	for f := range t.Fields() {
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			maps.Copy(keys, envKeys(f.Type))
			continue
		}
		if key, _, _ := strings.Cut(f.Tag.Get("env"), ","); key != "" {
			keys[f.Name] = key
		}
	}
	return keys
}

// Usage writes a command's help: its synopsis, then every environment variable of
// the config struct cfg with its default and the text of its `help` tag.
func Usage(w io.Writer, synopsis string, cfg any) {
	fmt.Fprintln(w, strings.TrimSpace(synopsis))
	envTable(w, "Environment:", reflect.TypeOf(cfg))
}

// envTable writes heading, then the variables of struct type t.
func envTable(w io.Writer, heading string, t reflect.Type) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, heading)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	usage(tw, t)
	tw.Flush()
}

// usage lists the variables of struct type t, embedded structs included.
func usage(tw io.Writer, t reflect.Type) {
	for f := range t.Fields() {
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			usage(tw, f.Type)
			continue
		}
		key, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if key == "" {
			continue
		}
		def := f.Tag.Get("envDefault")
		if d := f.Tag.Get("helpDefault"); d != "" {
			def = d
		}
		if def == "" {
			def = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", key, def, f.Tag.Get("help"))
	}
}

// AppUsage writes the part of --help about an application: about, then the
// variables of its config struct (cfg, a pointer, or nil).
func AppUsage(w io.Writer, about string, cfg any) {
	if about != "" {
		fmt.Fprintln(w)
		fmt.Fprintln(w, strings.TrimSpace(about))
	}
	if cfg == nil {
		return
	}
	t := reflect.TypeOf(cfg)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return
	}
	envTable(w, "Environment of the application:", t)
}

// WantsHelp reports whether args ask for help.
func WantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help", "help":
			return true
		}
	}
	return false
}

// Logging is the part of every command's config that sets up its logger.
type Logging struct {
	Level  string `env:"YOLK_LOG_LEVEL" envDefault:"info" help:"debug, info, warn or error"`
	Format string `env:"YOLK_LOG_FORMAT" helpDefault:"text on a terminal, else json" help:"text or json"`
}

// Validate checks the level and the format, as NewLogger does, for a command
// that checks its whole config before it makes its logger.
func (l Logging) Validate() error {
	_, err := l.NewLogger(io.Discard)
	return err
}

// NewLogger returns the logger l describes, writing to w. An empty format means text
// when w is a terminal and JSON otherwise (a child's stderr is a pipe to the master).
func (l Logging) NewLogger(w io.Writer, attrs ...slog.Attr) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.Level)); err != nil {
		return nil, BadValue("YOLK_LOG_LEVEL", l.Level, "want debug, info, warn or error")
	}
	opts := &slog.HandlerOptions{Level: level}
	format := l.Format
	if format == "" {
		format = "json"
		if isTerminal(w) {
			format = "text"
		}
	}
	var h slog.Handler
	switch format {
	case "json":
		h = slog.NewJSONHandler(w, opts)
	case "text":
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, BadValue("YOLK_LOG_FORMAT", l.Format, "want text or json")
	}
	return slog.New(h.WithAttrs(attrs)), nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Bus is the part of a child's config that gets it on the bus. In fork mode the
// master sets all of it; in external mode the platform does.
type Bus struct {
	URL    string `env:"YOLK_BUS_URL" envDefault:"nats://127.0.0.1:4222" help:"the bus (set by the master in fork mode)"`
	User   string `env:"YOLK_BUS_USER" help:"bus user (set by the master in fork mode)"`
	Secret string `env:"YOLK_BUS_SECRET" help:"bus secret (set by the master in fork mode; never logged)"`
	ID     string `env:"YOLK_ID" helpDefault:"pid (fork), <role>-<random> (external)" help:"this process's id on the bus (external mode: it starts with <role>-)"`
}

// CheckHostPort accepts host:port with a numeric port from 0 to 65535; the
// host may be empty (every interface).
func CheckHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || strconv.FormatUint(n, 10) != port {
		return errors.New("want a port of 0 to 65535")
	}
	return nil
}

// RunFunc is a command's body: everything but the process's globals, so tests can
// call it with their own arguments, environment and buffers.
type RunFunc func(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error

// Main runs run with args, the process's environment and stdio. After an error it
// exits: ExitUsage for a *UsageError, 1 for any other, which it prints prefixed
// with name; after a clean stop it returns. The first SIGTERM or SIGINT cancels run's context;
// a second one kills the process.
func Main(name string, args []string, run RunFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop) // after the first signal the default action is back
	err := run(ctx, args, os.Environ(), os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		var uerr *UsageError
		if errors.As(err, &uerr) {
			os.Exit(ExitUsage)
		}
		os.Exit(1)
	}
}
