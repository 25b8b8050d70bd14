package source

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/yolkgo/yolk/internal/cli"
)

// waitLong bounds every wait in these tests; things take milliseconds.
const waitLong = 10 * time.Second

// logLines collects a source's JSON log and lets a test wait for a record.
type logLines struct {
	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced on each line
}

func (l *logLines) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// find returns the first record whose msg is msg, decoded into rec, and a channel
// closed when the next line arrives.
func (l *logLines) find(msg string, rec any) (bool, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		var m struct{ Msg string }
		if json.Unmarshal([]byte(line), &m) == nil && m.Msg == msg {
			return json.Unmarshal([]byte(line), rec) == nil, nil
		}
	}
	return false, l.changed
}

// instance is a source started with the real run on port-0 addresses.
type instance struct {
	http string // host:port
	nats string // host:port, or "off"

	logs *logLines
	stop func() error // cancels run and returns its error; later calls return nil
	done <-chan error
}

func (in *instance) url(path string) string { return "http://" + in.http + path }

// waitLog waits for a log record whose msg is msg and decodes it into rec (if
// not nil).
func (in *instance) waitLog(t *testing.T, msg string, rec ...any) {
	t.Helper()
	var dst any = &struct{}{}
	if len(rec) > 0 {
		dst = rec[0]
	}
	deadline := time.After(waitLong)
	for {
		ok, changed := in.logs.find(msg, dst)
		if ok {
			return
		}
		if changed == nil {
			t.Fatalf("log record %q does not decode into %T", msg, dst)
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("no log record %q within %s; log:\n%s", msg, waitLong, in.logs)
		}
	}
}

// start runs the source with env (on top of port-0 addresses and debug JSON
// logs) until the test ends, and returns once it logs "source ready". At cleanup
// it stops the source and checks that run returned nil.
func start(t *testing.T, env ...string) *instance {
	t.Helper()
	environ := append([]string{
		"SOURCE_ADDR=127.0.0.1:0", "SOURCE_NATS_ADDR=127.0.0.1:0",
		"YOLK_LOG_FORMAT=json", "YOLK_LOG_LEVEL=debug",
	}, env...)
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, nil, environ, io.Discard, pw)
		pw.Close()
		done <- err
	}()
	logs := &logLines{changed: make(chan struct{})}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			logs.add(sc.Text())
		}
		io.Copy(io.Discard, pr)
	}()
	in := &instance{logs: logs}
	var once sync.Once
	in.stop = func() error {
		var err error
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
				<-drained
			case <-time.After(waitLong):
				err = fmt.Errorf("run did not return within %s of cancel", waitLong)
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := in.stop(); err != nil {
			t.Errorf("run() = %v, want nil after cancel", err)
		}
		if t.Failed() {
			t.Logf("source log:\n%s", logs)
		}
	})
	var ready struct{ HTTP, NATS string }
	deadline := time.After(waitLong)
	for {
		ok, changed := logs.find("source ready", &ready)
		if ok {
			in.http, in.nats = ready.HTTP, ready.NATS
			return in
		}
		select {
		case <-changed:
		case <-drained:
			t.Fatalf("run() = %v before ready", in.stop())
		case <-deadline:
			t.Fatalf("no \"source ready\" within %s", waitLong)
		}
	}
}

func TestBadEnvironment(t *testing.T) {
	tests := []struct {
		env     string
		wantVar string
	}{
		{"SOURCE_ADDR=nope", "SOURCE_ADDR"},
		{"SOURCE_ADDR=127.0.0.1:70000", "SOURCE_ADDR"},
		{"SOURCE_ADDR=127.0.0.1:http", "SOURCE_ADDR"},
		{"SOURCE_NATS_ADDR=4223", "SOURCE_NATS_ADDR"},
		{"SOURCE_NATS_ADDR=127.0.0.1", "SOURCE_NATS_ADDR"},
		{"SOURCE_SUBJECT=source.", "SOURCE_SUBJECT"},
		{"SOURCE_SUBJECT=a b", "SOURCE_SUBJECT"},
		{"SOURCE_SUBJECT=source.*", "SOURCE_SUBJECT"},
		{"SOURCE_SUBJECT=source..changed", "SOURCE_SUBJECT"},
		{"SOURCE_CHANGE_EVERY=soon", "SOURCE_CHANGE_EVERY"},
		{"SOURCE_CHANGE_EVERY=-1s", "SOURCE_CHANGE_EVERY"},
		{"SOURCE_CHANGE_EVERY=1us", "SOURCE_CHANGE_EVERY"},
		{"SOURCE_KEYS=many", "SOURCE_KEYS"},
		{"SOURCE_KEYS=-1", "SOURCE_KEYS"},
		{"SOURCE_KEYS=1000001", "SOURCE_KEYS"},
		{"YOLK_LOG_LEVEL=loud", "YOLK_LOG_LEVEL"},
		{"YOLK_LOG_FORMAT=xml", "YOLK_LOG_FORMAT"},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			// Cancelled: if the config were accepted, run would stop at once.
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			err := run(ctx, nil, []string{tt.env}, io.Discard, io.Discard)
			uerr, ok := errors.AsType[*cli.UsageError](err)
			if !ok {
				t.Fatalf("run() with %s = %v, want a *cli.UsageError", tt.env, err)
			}
			if uerr.Var != tt.wantVar {
				t.Errorf("run() with %s: error names %q, want %q (%v)", tt.env, uerr.Var, tt.wantVar, err)
			}
		})
	}
}

func TestBadArguments(t *testing.T) {
	for _, args := range [][]string{{"serve"}, {"healthcheck", "extra"}} {
		err := run(t.Context(), args, nil, io.Discard, io.Discard)
		if _, ok := errors.AsType[*cli.UsageError](err); !ok {
			t.Errorf("run(%q) = %v, want a *cli.UsageError", args, err)
		}
	}
}

func TestHelp(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"--help"}, nil, &out, io.Discard); err != nil {
		t.Fatalf("run(--help) = %v", err)
	}
	for _, want := range []string{
		"SOURCE_ADDR", "SOURCE_NATS_ADDR", "SOURCE_SUBJECT", "SOURCE_CHANGE_EVERY", "SOURCE_KEYS",
		"healthcheck", "PUT    /data/{key}", "/faults", "for tests", "wrongetag",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("run(--help) output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestHealthcheck(t *testing.T) {
	in := start(t, "SOURCE_NATS_ADDR=off")
	var out bytes.Buffer
	if err := run(t.Context(), []string{"healthcheck"}, []string{"SOURCE_ADDR=" + in.http}, &out, io.Discard); err != nil {
		t.Fatalf("healthcheck on a running source = %v, want nil", err)
	}
	if out.String() != "ok\n" {
		t.Errorf("healthcheck printed %q, want %q", out.String(), "ok\n")
	}

	_, port, _ := net.SplitHostPort(in.http)
	err := run(t.Context(), []string{"healthcheck"}, []string{"SOURCE_ADDR=0.0.0.0:" + port}, io.Discard, io.Discard)
	if err != nil {
		t.Errorf("healthcheck with SOURCE_ADDR=0.0.0.0:%s = %v, want nil (reached on loopback)", port, err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	err = run(t.Context(), []string{"healthcheck"}, []string{"SOURCE_ADDR=" + closed}, io.Discard, io.Discard)
	if err == nil {
		t.Errorf("healthcheck on a closed port = nil, want an error")
	} else if _, ok := errors.AsType[*cli.UsageError](err); ok {
		t.Errorf("healthcheck on a closed port = %v, want an error that is not a usage error (exit 1)", err)
	}
}

func TestAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().String()
	for _, env := range []string{"SOURCE_ADDR=" + busy, "SOURCE_NATS_ADDR=" + busy} {
		t.Run(env, func(t *testing.T) {
			environ := []string{"SOURCE_ADDR=127.0.0.1:0", "SOURCE_NATS_ADDR=127.0.0.1:0", "YOLK_LOG_FORMAT=json", env}
			ctx, cancel := context.WithTimeout(t.Context(), waitLong)
			defer cancel()
			err := run(ctx, nil, environ, io.Discard, io.Discard)
			if err == nil || ctx.Err() != nil {
				t.Fatalf("run() with %s = %v (context: %v), want a listen error at once", env, err, ctx.Err())
			}
			if _, ok := errors.AsType[*cli.UsageError](err); ok {
				t.Errorf("run() with %s = %v, want an error that is not a usage error", env, err)
			}
		})
	}
}

func TestNATSOff(t *testing.T) {
	in := start(t, "SOURCE_NATS_ADDR=off", "SOURCE_KEYS=0")
	if in.nats != "off" {
		t.Errorf("ready line: nats = %q, want off", in.nats)
	}
	resp := do(t, http.MethodGet, in.url("/data"), "", nil)
	if got := readAll(t, resp); got != "{}" {
		t.Errorf("GET /data with SOURCE_KEYS=0 = %q, want {}", got)
	}
	resp = do(t, http.MethodPut, in.url("/data/a"), "1", nil)
	if got, want := decodeVersion(t, resp), "2"; got != want {
		t.Errorf("PUT /data/a without a feed: version %q, want %q", got, want)
	}
}
