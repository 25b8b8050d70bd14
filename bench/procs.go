package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a process the harness started, in a process group of its own. Its
// stdout and stderr are read line by line into a lineLog.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *lineLog
	done chan struct{} // closed once the process has exited and been reaped
}

// procs is every process the harness started, and every pid it learned of
// (a master's children), so that cleanup can end them all, also after a panic.
var procs struct {
	mu      sync.Mutex
	started map[int]*proc
	others  map[int]string // pid -> the executable it must be running (guards pid reuse)
}

// startProc starts path with args and exactly env (nothing is inherited), in a
// process group of its own. The process is ended by cleanup at the latest.
func startProc(name, path string, args, env []string) (*proc, error) {
	p := &proc{name: name, out: newLineLog(), done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Env = env
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	pw.Close()
	procs.mu.Lock()
	if procs.started == nil {
		procs.started = make(map[int]*proc)
	}
	procs.started[p.cmd.Process.Pid] = p
	procs.mu.Unlock()
	go func() { // owned by the process: ends at its exit (EOF on the pipe)
		defer guard()
		p.out.readFrom(pr)
		pr.Close()
		p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// pid returns the process's pid.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to grace for the exit, then kills the
// process group. It returns an error if the process had to be killed.
func (p *proc) stop(grace time.Duration) error {
	if p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	p.kill()
	<-p.done
	return fmt.Errorf("%s (pid %d) did not stop within %v of SIGTERM: killed", p.name, p.pid(), grace)
}

// kill sends SIGKILL to the process's group.
func (p *proc) kill() {
	if !p.exited() {
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	}
}

// trackPID records a process the harness did not start itself (a master's
// child) so that cleanup can end it if it outlives its master.
func trackPID(pid int) {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return
	}
	procs.mu.Lock()
	defer procs.mu.Unlock()
	if procs.others == nil {
		procs.others = make(map[int]string)
	}
	procs.others[pid] = exe
}

// cleanup kills every process the harness started and every tracked pid still
// running the same executable. It is safe to call more than once.
func cleanup() {
	procs.mu.Lock()
	defer procs.mu.Unlock()
	for _, p := range procs.started {
		p.kill()
	}
	for pid, exe := range procs.others {
		if now, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && now == exe {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	procs.others = nil
}

// guard, deferred first in a goroutine of the harness, ends every started
// process before a panic there takes the harness down (a panic skips main's
// deferred cleanup when it happens on another goroutine).
func guard() {
	if p := recover(); p != nil {
		cleanup()
		panic(p)
	}
}

// lineLog collects a process's output lines and lets callers wait for one.
type lineLog struct {
	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced at each new line, and at EOF
	eof     bool
}

// maxLines bounds what a lineLog keeps; the oldest lines go first.
const maxLines = 20000

func newLineLog() *lineLog { return &lineLog{changed: make(chan struct{})} }

func (l *lineLog) readFrom(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		l.add(sc.Text())
	}
	l.mu.Lock()
	l.eof = true
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

func (l *lineLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) >= maxLines {
		l.lines = append(l.lines[:0], l.lines[maxLines/2:]...)
	}
	l.lines = append(l.lines, line)
	close(l.changed)
	l.changed = make(chan struct{})
}

// tail returns the last n lines, joined, for error messages.
func (l *lineLog) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	from := max(0, len(l.lines)-n)
	return strings.Join(l.lines[from:], "\n")
}

// waitFor waits until a line contains every one of subs and returns it. It
// fails when ctx ends or the output ends first.
func (l *lineLog) waitFor(ctx context.Context, subs ...string) (string, error) {
	seen := 0
	for {
		l.mu.Lock()
		if seen > len(l.lines) { // trimmed
			seen = 0
		}
		for ; seen < len(l.lines); seen++ {
			if containsAll(l.lines[seen], subs) {
				line := l.lines[seen]
				l.mu.Unlock()
				return line, nil
			}
		}
		ch, eof := l.changed, l.eof
		l.mu.Unlock()
		if eof {
			return "", fmt.Errorf("no line with %q: the output ended", subs)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return "", fmt.Errorf("no line with %q: %w", subs, context.Cause(ctx))
		}
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// waitLine is waitFor with a timeout, and the process's last lines in the error.
func (p *proc) waitLine(ctx context.Context, timeout time.Duration, subs ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	line, err := p.out.waitFor(ctx, subs...)
	if err != nil {
		return "", fmt.Errorf("%s: %w; its last output:\n%s", p.name, err, indent(p.out.tail(30)))
	}
	return line, nil
}

func indent(s string) string { return "    " + strings.ReplaceAll(s, "\n", "\n    ") }

// processGone reports whether pid has exited (a zombie counts as gone: it runs
// no code any more).
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] == 'Z' || b[i+2] == 'X'
	}
	return false
}

// rssMB returns a process's resident set size (VmRSS) in MB (10^6 bytes).
func rssMB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(b)
}

// parseVmRSS reads the VmRSS line of a /proc/<pid>/status file, in MB.
func parseVmRSS(status []byte) (float64, error) {
	for line := range strings.SplitSeq(string(status), "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("bad VmRSS line %q", line)
		}
		kb, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("bad VmRSS line %q", line)
		}
		return kb * 1024 / 1e6, nil
	}
	return 0, errors.New("no VmRSS line")
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// baseEnv is the environment every started process gets: PATH, HOME and TMPDIR
// from the harness's own, nothing else (no stray YOLK_ variables).
func baseEnv(extra ...string) []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return append(env, extra...)
}

// binaries are the executables of a run, by name: master, agent, worker,
// source, nats-server, and bench (this program, for the peers and the helper
// processes).
type binaries struct {
	dir  string
	self string // bench, when this very binary can serve: built without -race
}

func (b binaries) path(name string) string {
	if name == "bench" && b.self != "" {
		return b.self
	}
	return filepath.Join(b.dir, name)
}

// reusableSelf returns this executable's path if it was built without -race
// and with CGO_ENABLED=0 (go run under make bench), so that the peers can run
// it instead of a fresh build of the same code; else "".
func reusableSelf() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range info.Settings {
		if (s.Key == "-race" && s.Value == "true") || (s.Key == "CGO_ENABLED" && s.Value != "0") {
			return ""
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	return exe
}

// buildBinaries builds master, agent, worker, source, nats-server (from the
// module in go.mod, for the fleet's cluster) and, unless this executable will
// do, this harness (the peers and the raw NATS clients), without -race and
// with CGO_ENABLED=0, into dir.
func buildBinaries(ctx context.Context, root, dir string) (binaries, error) {
	bins := binaries{dir: dir, self: reusableSelf()}
	pkgs := []string{"./cmd/master", "./cmd/agent", "./cmd/worker", "./cmd/source", "github.com/nats-io/nats-server/v2"}
	if bins.self == "" {
		pkgs = append(pkgs, "./bench")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return binaries{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-trimpath", "-o", dir + "/"}, pkgs...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return binaries{}, fmt.Errorf("go build: %w\n%s", err, out.String())
	}
	return bins, nil
}

// binCacheDir is where the binaries are built: a directory of the user's
// cache for this checkout, so that go build relinks only what changed since
// the last run (linking six static binaries takes seconds); or under tmp.
func binCacheDir(root, tmp string) string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return filepath.Join(tmp, "bin")
	}
	sum := sha256.Sum256([]byte(root))
	return filepath.Join(dir, "yolk-bench", hex.EncodeToString(sum[:6]))
}

// moduleRoot finds the directory of yolk's go.mod, from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/yolkgo/yolk\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the yolk module: run from the repository (make bench)")
		}
		dir = parent
	}
}
