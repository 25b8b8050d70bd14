package fleetrig

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// child is a Process that re-runs this test binary as the scenario name (TestMain).
func child(t *testing.T, scenario string, log *Log) *Process {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &Process{Name: scenario, Path: exe, Env: []string{"FLEETRIG_CHILD=" + scenario}, Log: log}
	t.Cleanup(func() { p.Kill() })
	return p
}

func TestProcessOutputAndExit(t *testing.T) {
	var buf bytes.Buffer
	p := child(t, "print", NewLog(&buf))
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := p.Wait(ctx)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("Wait = %v, want exit status 3", err)
	}
	if got := p.Err(); got != err {
		t.Errorf("Err() = %v, want Wait's %v", got, err)
	}
	// Wait returns after the output is copied: the unfinished line is there.
	want := "print | line one\nprint | line two\nprint | no newline\n"
	if got := buf.String(); got != want {
		t.Errorf("log =\n%q\nwant\n%q", got, want)
	}
	if p.Running() {
		t.Error("Running() = true after the exit")
	}
}

func TestProcessStopKillsWhatIgnoresSIGTERM(t *testing.T) {
	var buf syncBuffer
	p := child(t, "ignore-sigterm", NewLog(&buf))
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	// It has installed its handler once it printed.
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(buf.String(), "ignoring SIGTERM") })
	if err := p.Start(); err == nil {
		t.Error("Start of a running process = nil, want an error")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := p.Stop(ctx)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Stop = %v, want an error saying it was killed", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("Stop took %v, want the context's 300ms and a little", d)
	}
	if err := syscall.Kill(p.Pid(), 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("kill -0 %d after Stop = %v, want ESRCH (gone)", p.Pid(), err)
	}
	if err := p.Signal(syscall.SIGTERM); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Signal after the exit = %v, want ErrNotRunning", err)
	}
	// And it starts again.
	if err := p.Start(); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	if err := p.Kill(); err != nil {
		t.Errorf("Kill = %v", err)
	}
	if p.Starts() != 2 {
		t.Errorf("Starts() = %d, want 2", p.Starts())
	}
}

// waitFor polls cond until it holds, or fails the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", timeout)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
