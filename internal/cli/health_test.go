package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestHealthPath(t *testing.T) {
	tests := []struct {
		mode, socket, want string
	}{
		{ModeFork, "", ""},
		{ModeFork, "/run/h.sock", "/run/h.sock"},
		{ModeExternal, "", DefaultHealthSocket},
		{ModeExternal, "/run/h.sock", "/run/h.sock"},
		{ModeExternal, "off", ""},
	}
	for _, tt := range tests {
		d := Deploy{Mode: tt.mode, HealthSocket: tt.socket}
		if got := d.HealthPath(); got != tt.want {
			t.Errorf("Deploy{%s, %q}.HealthPath() = %q, want %q", tt.mode, tt.socket, got, tt.want)
		}
	}
}

func TestDeployValidate(t *testing.T) {
	tests := []struct {
		d       Deploy
		wantVar string // "" for valid
	}{
		{Deploy{Mode: ModeFork}, ""},
		{Deploy{Mode: ModeExternal, HealthSocket: "/tmp/x.sock"}, ""},
		{Deploy{Mode: "cluster"}, "YOLK_MODE"},
		{Deploy{Mode: ModeExternal, HealthSocket: "/" + strings.Repeat("x", 120)}, "YOLK_HEALTH_SOCKET"},
	}
	for _, tt := range tests {
		err := tt.d.Validate()
		var uerr *UsageError
		switch {
		case tt.wantVar == "" && err != nil:
			t.Errorf("%+v.Validate() = %v, want nil", tt.d, err)
		case tt.wantVar != "" && (!errors.As(err, &uerr) || uerr.Var != tt.wantVar):
			t.Errorf("%+v.Validate() = %v, want a usage error naming %s", tt.d, err, tt.wantVar)
		}
	}
}

func TestProcessID(t *testing.T) {
	ext := Deploy{Mode: ModeExternal}
	if got := ext.ProcessID("worker", "w7"); got != "w7" {
		t.Errorf("ProcessID(worker, w7) = %q, want w7", got)
	}
	a, b := ext.ProcessID("worker", ""), ext.ProcessID("worker", "")
	if !regexp.MustCompile(`^worker-[0-9a-f]{8}$`).MatchString(a) || a == b {
		t.Errorf("ProcessID(worker, \"\") in external mode = %q then %q, want distinct worker-<8 hex>", a, b)
	}
	if got := (Deploy{Mode: ModeFork}).ProcessID("agent", ""); got != strconv.Itoa(os.Getpid()) {
		t.Errorf("ProcessID(agent, \"\") in fork mode = %q, want the pid", got)
	}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// serveHealth binds a health socket in a fresh directory and serves it until the test ends.
func serveHealth(t *testing.T, ready func() error) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "h.sock")
	stop, err := Deploy{Mode: ModeExternal, HealthSocket: path}.StartHealth(ready, discard())
	if err != nil {
		t.Fatalf("StartHealth: %v", err)
	}
	t.Cleanup(stop)
	return path
}

func TestHealthcheck(t *testing.T) {
	var ready atomic.Bool
	path := serveHealth(t, func() error {
		if !ready.Load() {
			return errors.New("the cache is not warm yet")
		}
		return nil
	})
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("health socket: %v, mode %v; want mode 0600", err, st.Mode().Perm())
	}
	var out bytes.Buffer
	if err := Healthcheck(t.Context(), path, false, &out); err != nil {
		t.Errorf("Healthcheck(alive) = %v, want nil", err)
	}
	err = Healthcheck(t.Context(), path, true, &out)
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "not warm") {
		t.Errorf("Healthcheck(ready) while not ready = %v, want a 503 with the reason", err)
	}
	ready.Store(true)
	if err := Healthcheck(t.Context(), path, true, &out); err != nil {
		t.Errorf("Healthcheck(ready) when ready = %v, want nil", err)
	}
	if got := out.String(); got != "ok\nready\n" {
		t.Errorf("Healthcheck output %q, want ok then ready", got)
	}
}

func TestHealthcheckNobodyThere(t *testing.T) {
	dir := t.TempDir()
	dead := filepath.Join(dir, "dead.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: dead, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	for _, path := range []string{dead, filepath.Join(dir, "none.sock")} {
		start := time.Now()
		err := Healthcheck(t.Context(), path, true, io.Discard)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("Healthcheck(%s) = %v, want an error naming the socket", filepath.Base(path), err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Healthcheck(%s) took %v, want at most its 2s timeout", filepath.Base(path), d)
		}
	}
}

func TestListenHealth(t *testing.T) {
	dir := t.TempDir()
	t.Run("stale socket is replaced", func(t *testing.T) {
		path := filepath.Join(dir, "stale.sock")
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		ln.SetUnlinkOnClose(false)
		ln.Close()
		hs, err := ListenHealth(path)
		if err != nil {
			t.Fatalf("ListenHealth over a stale socket = %v, want it replaced", err)
		}
		hs.Close()
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket after Close: %v, want it removed", err)
		}
	})
	t.Run("live socket is kept", func(t *testing.T) {
		path := serveHealth(t, func() error { return nil })
		if _, err := ListenHealth(path); err == nil || !strings.Contains(err.Error(), "YOLK_HEALTH_SOCKET") {
			t.Errorf("ListenHealth where another process serves = %v, want an error naming YOLK_HEALTH_SOCKET", err)
		}
		if err := Healthcheck(t.Context(), path, false, io.Discard); err != nil {
			t.Errorf("the first server stopped answering: %v", err)
		}
	})
	t.Run("a file is not removed", func(t *testing.T) {
		path := filepath.Join(dir, "data")
		if err := os.WriteFile(path, []byte("keep"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ListenHealth(path); err == nil {
			t.Error("ListenHealth over a regular file = nil, want an error")
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != "keep" {
			t.Errorf("the file after ListenHealth: %q, %v; want it untouched", b, err)
		}
	})
}

func TestStartHealthOff(t *testing.T) {
	stop, err := Deploy{Mode: ModeFork}.StartHealth(func() error { return nil }, discard())
	if err != nil {
		t.Fatal(err)
	}
	stop()
}

func TestAnnounce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		var calls, dones atomic.Int32
		send := func(ctx context.Context) error {
			if calls.Add(1) <= 2 { // the master is away for two tries
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		}
		again := make(chan struct{})
		finished := make(chan struct{})
		go func() {
			Announce(ctx, send, again, 5*time.Second, discard(), func() { dones.Add(1) })
			close(finished)
		}()
		synctest.Wait()
		time.Sleep(2*5*time.Second + 2*announceRetry)
		synctest.Wait()
		if calls.Load() != 3 || dones.Load() != 1 {
			t.Fatalf("after two failed tries: %d sends, %d done; want 3 and 1", calls.Load(), dones.Load())
		}
		again <- struct{}{} // reconnected to a restarted master
		synctest.Wait()
		if calls.Load() != 4 || dones.Load() != 2 {
			t.Fatalf("after a reconnect: %d sends, %d done; want 4 and 2", calls.Load(), dones.Load())
		}
		cancel()
		<-finished
	})
}
