package supervisor

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// LifelineFD is the child's fd of the lifeline pipe's read end.
const LifelineFD = 3

// Environment variables the supervisor sets in every child.
const (
	EnvLifelineFD = "YOLK_LIFELINE_FD" // "3": see LifelineFD
	EnvRole       = "YOLK_ROLE"        // the child's Spec.Role
)

const (
	tailLines = 20          // stderr lines kept per child for error reports
	maxLine   = 64 << 10    // a longer line is cut into pieces
	waitDelay = time.Second // how long Wait waits for the output pipes after the exit
)

// A child is one process of a slot.
type child struct {
	pid      int       // set before pidKnown is closed
	started  time.Time // set before pidKnown is closed
	readyAt  time.Time // when its slot saw it ready, zero until then; only the slot's goroutine uses it
	cmd      *exec.Cmd
	pidKnown chan struct{}
	ready    chan struct{}
	readyOne sync.Once
	exited   chan struct{} // closed once reaped and its output drained
	exitErr  error         // nil after exit code 0; set before exited is closed
	tail     ring          // last stderr lines
	stdout   lineWriter
	stderr   lineWriter
}

func (c *child) markReady() { c.readyOne.Do(func() { close(c.ready) }) }

// startChild runs Prepare and starts one process for sl. It returns
// errStopped when the slot was retired or the supervisor is stopping.
func (s *Supervisor) startChild(sl *slot) (*child, error) {
	spec := sl.spec
	var (
		env     []string
		started func(int)
		exited  func()
	)
	if s.cfg.Prepare != nil {
		var err error
		if env, started, exited, err = s.cfg.Prepare(spec.Role); err != nil {
			return nil, fmt.Errorf("prepare %s: %w", spec.Role, err)
		}
	}
	c := &child{
		pidKnown: make(chan struct{}),
		ready:    make(chan struct{}),
		exited:   make(chan struct{}),
	}
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Env = append(slices.Clip(spec.Env), env...)
	cmd.Env = append(cmd.Env, EnvLifelineFD+"="+strconv.Itoa(LifelineFD), EnvRole+"="+spec.Role)
	c.stdout = lineWriter{c: c, role: spec.Role, out: s.cfg.Output}
	c.stderr = lineWriter{c: c, role: spec.Role, out: s.cfg.Output, tail: &c.tail}
	cmd.Stdout, cmd.Stderr = &c.stdout, &c.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: s.pdeathsig}
	cmd.WaitDelay = waitDelay
	c.cmd = cmd

	s.mu.Lock()
	if s.stopping || sl.retired() {
		s.mu.Unlock()
		if exited != nil {
			exited()
		}
		return nil, errStopped
	}
	cmd.ExtraFiles = append([]*os.File{s.lifeR}, spec.ExtraFiles...)
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		if exited != nil {
			exited()
		}
		return nil, fmt.Errorf("exec %s: %w", spec.Path, err)
	}
	c.pid, c.started = cmd.Process.Pid, time.Now()
	close(c.pidKnown)
	s.children[c.pid] = c
	sl.cur, sl.state = c, StateStarting
	s.mu.Unlock()

	s.log.Debug("child started", "role", spec.Role, "pid", c.pid)
	if started != nil {
		started(c.pid)
	}
	s.wg.Go(func() { s.reap(c, exited) })
	return c, nil
}

// reap waits for c to exit and for its output to drain, kills what is left
// of its process group, calls exited and closes c.exited.
func (s *Supervisor) reap(c *child, exited func()) {
	_ = c.cmd.Wait() // exec.ErrWaitDelay only says a grandchild kept the pipes open
	c.stdout.flush() // Wait has waited for the copying goroutines
	c.stderr.flush()
	if ps := c.cmd.ProcessState; ps != nil && !ps.Success() {
		c.exitErr = &exitStatus{ps.String()}
	}
	s.mu.Lock()
	_ = syscall.Kill(-c.pid, syscall.SIGKILL) // leftovers of its group; no orphans
	delete(s.children, c.pid)
	s.mu.Unlock()
	if exited != nil {
		exited()
	}
	close(c.exited)
}

// exitStatus is how a child ended: "exit status 3", "signal: killed".
type exitStatus struct{ s string }

func (e *exitStatus) Error() string { return e.s }

// lineWriter cuts a child's output into lines for Output and, for stderr,
// the tail ring. exec.Cmd calls Write from one goroutine and Wait waits for
// it; the last partial line is emitted by flush after Wait.
type lineWriter struct {
	c    *child
	role string
	out  func(role string, pid int, line []byte)
	tail *ring
	buf  []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	<-w.c.pidKnown // output can arrive before Start has returned
	w.buf = append(w.buf, p...)
	start := 0
	for {
		i := bytes.IndexByte(w.buf[start:], '\n')
		if i < 0 {
			break
		}
		w.emit(w.buf[start : start+i])
		start += i + 1
	}
	for len(w.buf)-start >= maxLine {
		w.emit(w.buf[start : start+maxLine])
		start += maxLine
	}
	w.buf = w.buf[:copy(w.buf, w.buf[start:])]
	return len(p), nil
}

func (w *lineWriter) emit(line []byte) {
	line = bytes.Clone(bytes.TrimSuffix(line, []byte{'\r'}))
	if w.tail != nil {
		w.tail.add(string(line))
	}
	if w.out != nil {
		w.out(w.role, w.c.pid, line)
	}
}

func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = nil
	}
}

// ring keeps the last tailLines lines. Safe for concurrent use.
type ring struct {
	mu   sync.Mutex
	buf  [tailLines]string
	next int
	n    int
}

func (r *ring) add(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = line
	r.next = (r.next + 1) % tailLines
	r.n = min(r.n+1, tailLines)
}

// lines returns the kept lines, oldest first.
func (r *ring) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, r.n)
	for i := range r.n {
		out = append(out, r.buf[(r.next-r.n+i+tailLines)%tailLines])
	}
	return out
}
