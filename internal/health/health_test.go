package health

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// serveHealth binds a health socket in a fresh directory and serves it until the test ends.
func serveHealth(t *testing.T, ready func() error) string {
	t.Helper()
	return serveChecks(t, nil, ready)
}

// serveChecks is serveHealth with a liveness check.
func serveChecks(t *testing.T, live, ready func() error) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "h.sock")
	hs, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hs.ServeChecks(ctx, live, ready, discard()) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v, want nil after a cancel", err)
		}
	})
	return path
}

func TestCheck(t *testing.T) {
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
	if err := Check(t.Context(), path, false, &out); err != nil {
		t.Errorf("Check(alive) = %v, want nil", err)
	}
	err = Check(t.Context(), path, true, &out)
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "not warm") {
		t.Errorf("Check(ready) while not ready = %v, want a 503 with the reason", err)
	}
	ready.Store(true)
	if err := Check(t.Context(), path, true, &out); err != nil {
		t.Errorf("Check(ready) when ready = %v, want nil", err)
	}
	if got := out.String(); got != "ok\nready\n" {
		t.Errorf("Healthcheck output %q, want ok then ready", got)
	}
}

// A process that runs but is stuck fails both checks, with the reason.
func TestCheckLive(t *testing.T) {
	var stuck atomic.Bool
	path := serveChecks(t, func() error {
		if stuck.Load() {
			return errors.New("3 requests in flight, none done for 10s")
		}
		return nil
	}, func() error { return nil })
	if err := Check(t.Context(), path, false, io.Discard); err != nil {
		t.Errorf("Check(alive) = %v, want nil", err)
	}
	stuck.Store(true)
	for _, ready := range []bool{false, true} {
		err := Check(t.Context(), path, ready, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "none done for 10s") {
			t.Errorf("Check(ready=%v) while stuck = %v, want a 503 with the reason", ready, err)
		}
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
		err := Check(t.Context(), path, true, io.Discard)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("Check(%s) = %v, want an error naming the socket", filepath.Base(path), err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Check(%s) took %v, want at most its 2s timeout", filepath.Base(path), d)
		}
	}
}

func TestListen(t *testing.T) {
	dir := t.TempDir()
	t.Run("stale socket is replaced", func(t *testing.T) {
		path := filepath.Join(dir, "stale.sock")
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		ln.SetUnlinkOnClose(false)
		ln.Close()
		hs, err := Listen(path)
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
		if _, err := Listen(path); !errors.Is(err, ErrInUse) {
			t.Errorf("ListenHealth where another process serves = %v, want ErrInUse", err)
		}
		if err := Check(t.Context(), path, false, io.Discard); err != nil {
			t.Errorf("the first server stopped answering: %v", err)
		}
	})
	t.Run("a file is not removed", func(t *testing.T) {
		path := filepath.Join(dir, "data")
		if err := os.WriteFile(path, []byte("keep"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Listen(path); err == nil {
			t.Error("ListenHealth over a regular file = nil, want an error")
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != "keep" {
			t.Errorf("the file after ListenHealth: %q, %v; want it untouched", b, err)
		}
	})
}
