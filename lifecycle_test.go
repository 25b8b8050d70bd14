package yolk_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/yolkgo/yolk"
)

// hooksApp records each hook of each process's life as a line "<role> <id>
// <event>" in the file HOOKS_OUT names.
func hooksApp() yolk.App {
	record := func(p *yolk.Process, event string) {
		f, err := os.OpenFile(os.Getenv("HOOKS_OUT"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			panic(err)
		}
		defer f.Close()
		fmt.Fprintf(f, "%s %s %s\n", p.Role(), p.ID(), event) // one write: lines do not interleave
	}
	ready := func(p *yolk.Process) bool {
		select {
		case <-p.Ready():
			return true
		default:
			return false
		}
	}
	setup := func(p *yolk.Process) {
		record(p, "setup")
		p.Go(func(ctx context.Context) error {
			<-ctx.Done()
			record(p, "go-end")
			return ctx.Err()
		})
		p.BeforeReady(func(ctx context.Context) error {
			record(p, "before-ready ready="+strconv.FormatBool(ready(p)))
			return nil
		})
		p.OnServiceReady(func(ctx context.Context) {
			record(p, "service-ready ready="+strconv.FormatBool(ready(p)))
		})
		p.BeforeClose(func(ctx context.Context) error {
			record(p, "before-close")
			return nil
		})
	}
	return yolk.App{
		Agent: func(a *yolk.Agent) error { setup(a.Process); return nil },
		Worker: func(w *yolk.Worker) error {
			setup(w.Process)
			w.Handle(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { io.WriteString(rw, w.ID()) }))
			return nil
		},
	}
}

// hookLog reads the lines hooksApp wrote: the events of each process, by id,
// and the ids in order of their first line.
func hookLog(t *testing.T, path string) (map[string][]string, []string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	events := make(map[string][]string)
	var ids []string
	for line := range strings.Lines(string(b)) {
		f := strings.SplitN(strings.TrimSpace(line), " ", 3)
		if len(f) < 3 {
			t.Fatalf("bad hook line %q", line)
		}
		id := f[0] + " " + f[1]
		if _, ok := events[id]; !ok {
			ids = append(ids, id)
		}
		events[id] = append(events[id], f[2])
	}
	return events, ids
}

// Every process's hooks run in the documented order, Ready is closed before
// the service-ready hooks and not before the before-ready ones, and a worker
// restarted after the service was ready runs its service-ready hooks too.
func TestLifecycleHooks(t *testing.T) {
	out := t.TempDir() + "/hooks"
	environ := append(os.Environ(), "YOLK_WORKERS=2", "YOLK_HTTP_ADDR="+freeAddr(), "YOLK_RUN_DIR="+t.TempDir(),
		"YOLK_SHUTDOWN_TIMEOUT=10s", envTestApp+"=hooks", "HOOKS_OUT="+out)
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var stderr syncBuffer
	done := make(chan error, 1)
	go func() { done <- yolk.Run(ctx, hooksApp(), nil, environ, io.Discard, &stderr) }()
	defer func() {
		if t.Failed() {
			t.Logf("master's log:\n%s", stderr.String())
		}
	}()

	serviceReady := func(n int) []string {
		t.Helper()
		var ids []string
		waitFor(t, 60*time.Second, fmt.Sprintf("%d processes to run their service-ready hooks", n), func() bool {
			events, order := hookLog(t, out)
			ids = nil
			for _, id := range order {
				if slices.ContainsFunc(events[id], func(e string) bool { return strings.HasPrefix(e, "service-ready") }) {
					ids = append(ids, id)
				}
			}
			return len(ids) >= n
		})
		return ids
	}
	first := serviceReady(3)

	// A worker killed now is replaced by one that learns the service is ready
	// from the master's answer to its ready report.
	i := slices.IndexFunc(first, func(id string) bool { return strings.HasPrefix(id, "worker ") })
	killed := first[i]
	pid, _ := strconv.Atoi(strings.TrimPrefix(killed, "worker "))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	serviceReady(4)

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil after a stop", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return within 60s of the stop")
	}
	events, ids := hookLog(t, out)
	if len(ids) != 4 {
		t.Fatalf("hooks of %d processes, want 4 (agent, 2 workers, a replacement): %v", len(ids), events)
	}
	want := []string{"setup", "before-ready ready=false", "service-ready ready=true", "before-close", "go-end"}
	for _, id := range ids {
		got := events[id]
		if id == killed {
			if !slices.Equal(got, want[:3]) {
				t.Errorf("%s (killed): hooks %q, want %q", id, got, want[:3])
			}
			continue
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: hooks %q, want %q", id, got, want)
		}
	}
}

// waitFor polls cond until it holds, or fails the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
