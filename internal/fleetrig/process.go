package fleetrig

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
)

// Process is a program run as a real OS process in a process group of its own (so a
// terminal's Ctrl-C does not reach it: whoever runs it decides when it stops), with
// its stdout and stderr prefixed by Name in a Log. It can be started again after it
// exited, which is how a test restarts a node or a master.
//
// Its methods are safe for concurrent use. Whoever starts it stops it (Stop or Kill):
// a goroutine waits for each run until the process exits.
type Process struct {
	Name string   // the prefix of its lines in the log
	Path string   // the executable
	Args []string // arguments after the program name
	Env  []string // its whole environment; nil: none at all
	Dir  string   // working directory; empty: this process's
	Log  *Log     // where its output goes; nil: nowhere

	mu   sync.Mutex
	run  *run // the current or last run; nil before the first Start
	runs int
}

// run is one start of a Process.
type run struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and its output is copied
	err  error         // cmd.Wait's error, set before done is closed
}

// ErrNotRunning is returned by Signal, Stop and Kill when the process is not
// running.
var ErrNotRunning = errors.New("fleetrig: process is not running")

// Start starts the process. It fails if the process is already running.
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.run != nil && !p.run.exited() {
		return fmt.Errorf("start %s: already running (pid %d)", p.Name, p.run.cmd.Process.Pid)
	}
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env = p.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.Dir = p.Dir
	// Pdeathsig: should this process die without stopping it, it dies too (best
	// effort: the signal follows the thread that started it, and Go keeps its
	// threads).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var out *LineWriter
	if p.Log != nil {
		out = p.Log.Writer(p.Name)
		cmd.Stdout, cmd.Stderr = out, out
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	r := &run{cmd: cmd, done: make(chan struct{})}
	p.run = r
	p.runs++
	go func() {
		r.err = cmd.Wait()
		if out != nil {
			out.Close()
		}
		close(r.done)
	}()
	return nil
}

func (r *run) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// current is the current or last run, or nil before the first Start.
func (p *Process) current() *run {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.run
}

// Pid is the pid of the current or last run, 0 before the first Start.
func (p *Process) Pid() int {
	if r := p.current(); r != nil {
		return r.cmd.Process.Pid
	}
	return 0
}

// Starts is how many times the process was started.
func (p *Process) Starts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runs
}

// Done is closed when the current run has exited (at once before the first Start).
func (p *Process) Done() <-chan struct{} {
	if r := p.current(); r != nil {
		return r.done
	}
	c := make(chan struct{})
	close(c)
	return c
}

// Err is how the last run ended (cmd.Wait's error: nil for exit code 0), or nil
// while it runs.
func (p *Process) Err() error {
	r := p.current()
	if r == nil || !r.exited() {
		return nil
	}
	return r.err
}

// Running reports whether the process was started and has not exited.
func (p *Process) Running() bool {
	r := p.current()
	return r != nil && !r.exited()
}

// Signal sends sig to the process's group: the process and whatever it started
// without a group of its own.
func (p *Process) Signal(sig syscall.Signal) error {
	r := p.current()
	if r == nil || r.exited() {
		return fmt.Errorf("signal %s: %w", p.Name, ErrNotRunning)
	}
	if err := syscall.Kill(-r.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("signal %s: %w", p.Name, err)
	}
	return nil
}

// Stop sends SIGTERM to the process's group and waits until the process exits.
// When ctx is done first, it sends SIGKILL, waits for the exit, and returns an error
// that says so. Otherwise it returns how the process ended: nil for exit code 0. It
// returns nil at once if the process is not running.
func (p *Process) Stop(ctx context.Context) error {
	r := p.current()
	if r == nil || r.exited() {
		return nil
	}
	syscall.Kill(-r.cmd.Process.Pid, syscall.SIGTERM) // ESRCH: it just exited
	select {
	case <-r.done:
		if r.err != nil {
			return fmt.Errorf("stop %s: %w", p.Name, r.err)
		}
		return nil
	case <-ctx.Done():
	}
	syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	<-r.done
	return fmt.Errorf("stop %s: no exit after SIGTERM (%w): killed", p.Name, context.Cause(ctx))
}

// Kill sends SIGKILL to the process's group, as a crash would, and waits until the
// process has exited. It returns nil if the process is not running.
func (p *Process) Kill() error {
	r := p.current()
	if r == nil || r.exited() {
		return nil
	}
	syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	<-r.done
	return nil
}

// Wait waits until the current run exits or ctx is done, and returns how it ended.
func (p *Process) Wait(ctx context.Context) error {
	r := p.current()
	if r == nil {
		return fmt.Errorf("wait %s: %w", p.Name, ErrNotRunning)
	}
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return fmt.Errorf("wait %s: %w", p.Name, context.Cause(ctx))
	}
}
