package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The HTTP tail contenders (section http-tail): how the p99 of cached reads
// depends on the serving architecture. Each is a set of processes behind one
// listening socket the way node's cluster shares it (role cluster): a parent
// accepts every connection and deals them in turn to its children's
// acceptors over Unix sockets, so that each gets the same share.
//
//   - loop-http: an event loop per acceptor: one goroutine locked to its
//     thread runs epoll_wait, reads every ready socket, answers every
//     complete request in its buffer, and writes the answers at once.
//   - raw-http-fd: the floor (runRawHTTP's goroutine per connection) on the
//     connections dealt to it.
//
// Neither is an HTTP server (no bodies, no limits, no timeouts).

// runCluster is the parent of procs children, each with per acceptors: it
// listens on addr, starts the children as this binary's role with per Unix
// sockets as descriptors 3, 4, ... (the first argument is per) and
// GOMAXPROCS=gomaxprocs (0: the default), prints "ready" once each child
// has, then deals the connections it accepts to the acceptors in turn. It
// stops the children when ctx ends. The children's other lines pass through.
func runCluster(ctx context.Context, addr string, procs, per, gomaxprocs int, role string, args []string, stdout io.Writer) error {
	lc := net.ListenConfig{}
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var out sync.Mutex // one line at a time on stdout
	readies := make(chan struct{}, procs)
	var cmds []*exec.Cmd
	var dealers []int // the parent's end of every acceptor's socket
	var wg sync.WaitGroup
	defer wg.Wait()
	for range procs {
		cmd := exec.Command(self, append([]string{role, strconv.Itoa(per)}, args...)...)
		for range per {
			pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("socketpair: %w", err)
			}
			dealers = append(dealers, pair[0])
			f := os.NewFile(uintptr(pair[1]), "acceptor")
			defer f.Close()
			cmd.ExtraFiles = append(cmd.ExtraFiles, f)
		}
		cmd.Env = os.Environ()
		if gomaxprocs > 0 {
			cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(gomaxprocs))
		}
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		pipe, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start %s: %w", role, err)
		}
		cmds = append(cmds, cmd)
		wg.Go(func() {
			sc := bufio.NewScanner(pipe)
			for sc.Scan() {
				if bytes.HasPrefix(sc.Bytes(), []byte("ready")) {
					readies <- struct{}{}
					continue
				}
				out.Lock()
				fmt.Fprintln(stdout, sc.Text())
				out.Unlock()
			}
			cmd.Wait()
		})
	}
	defer func() {
		for _, c := range cmds {
			_ = c.Process.Signal(syscall.SIGTERM)
		}
	}()
	for range procs {
		select {
		case <-readies:
		case <-ctx.Done():
			return nil
		}
	}
	out.Lock()
	fmt.Fprintln(stdout, "ready", addr)
	out.Unlock()
	context.AfterFunc(ctx, func() { ln.Close() })
	for next := 0; ; next = (next + 1) % len(dealers) {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		f, err := c.(*net.TCPConn).File()
		c.Close()
		if err != nil {
			return err
		}
		err = unix.Sendmsg(dealers[next], []byte{0}, unix.UnixRights(int(f.Fd())), nil, 0)
		f.Close()
		if err != nil {
			return fmt.Errorf("deal a connection: %w", err)
		}
	}
}

// prepared is the floor's answers: the bytes of a whole response by path.
type prepared struct {
	answers  map[string][]byte
	notFound []byte
}

func prepareAnswers() prepared {
	id := strconv.Itoa(os.Getpid())
	date := time.Now().UTC().Format(http.TimeFormat) // for the same header set; not kept current
	p := prepared{answers: map[string][]byte{}, notFound: []byte("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")}
	for k, v := range benchItems() {
		p.answers["/data/"+k] = fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: %s\r\nX-Yolk-Version: 1\r\nX-Yolk-Worker: %s\r\nContent-Length: %d\r\n\r\n%s", date, id, len(v), v)
	}
	return p
}

func (p prepared) answer(path []byte) []byte {
	if a, ok := p.answers[string(path)]; ok {
		return a
	}
	return p.notFound
}

// acceptEach receives the connections runCluster deals to the acceptor
// socket fd, in blocking calls on a thread of its own, and passes each,
// non-blocking, to each. It prints "conn <pid>.<fd>" per connection, for the
// harness to count the shares.
func acceptEach(fd int, stdout io.Writer, each func(nfd int)) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pid := os.Getpid()
	b, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	for {
		_, oobn, _, _, err := unix.Recvmsg(fd, b, oob, unix.MSG_CMSG_CLOEXEC)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("recvmsg: %w", err)
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			return fmt.Errorf("recvmsg: no descriptor (%v)", err)
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			return fmt.Errorf("recvmsg: no descriptor (%v)", err)
		}
		nfd := fds[0]
		if err := unix.SetNonblock(nfd, true); err != nil {
			unix.Close(nfd)
			continue
		}
		_ = unix.SetsockoptInt(nfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1) // as Go's net and node do
		fmt.Fprintf(stdout, "conn %d.%d\n", pid, fd)
		each(nfd)
	}
}

// runRawHTTPFD is the floor on the connections dealt to the acceptor socket
// fd: runRawHTTP's goroutine per connection.
func runRawHTTPFD(ctx context.Context, fd int, stdout io.Writer) error {
	p := prepareAnswers()
	fmt.Fprintln(stdout, "ready")
	errc := make(chan error, 1)
	go func() { // ends with the process
		errc <- acceptEach(fd, stdout, func(nfd int) {
			f := os.NewFile(uintptr(nfd), "tcp")
			c, err := net.FileConn(f)
			f.Close()
			if err == nil {
				go serveRaw(c, p)
			}
		})
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return nil
	}
}

// serveRaw is the floor's loop for one connection: read a request head, write
// the prepared answer for its path, flush when no request is waiting.
func serveRaw(c net.Conn, p prepared) {
	defer c.Close()
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		var path []byte
		if f := bytes.Fields(line); len(f) == 3 {
			path = f[1]
		}
		for { // the headers, up to the blank line
			h, err := r.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(h) <= 2 {
				break
			}
		}
		w.Write(p.answer(path))
		if r.Buffered() == 0 && w.Flush() != nil {
			return
		}
	}
}

// runLoopHTTP runs loops event loops, each with its own epoll instance and
// acceptor socket (descriptors 3, 4, ...).
func runLoopHTTP(ctx context.Context, loops int, stdout io.Writer) error {
	p := prepareAnswers()
	errc := make(chan error, 2*loops)
	for i := range loops {
		ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			return fmt.Errorf("epoll_create1: %w", err)
		}
		l := &eventLoop{ep: ep, p: p, conns: map[int]*loopConn{}}
		go func() { errc <- l.run() }() // ends with the process
		go func() {                     // ends with the process
			errc <- acceptEach(3+i, stdout, func(nfd int) {
				ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(nfd)}
				if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, nfd, &ev); err != nil {
					unix.Close(nfd)
				}
			})
		}()
	}
	fmt.Fprintln(stdout, "ready")
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return nil
	}
}

// eventLoop serves the connections its acceptor adds to its epoll instance,
// on one thread. A connection it has not seen yet is new: the loop forgets a
// descriptor before closing it, so a number the kernel reuses starts afresh.
type eventLoop struct {
	ep    int
	p     prepared
	conns map[int]*loopConn
	buf   []byte // what one read(2) returns
	out   []byte // the answers to one read's requests
}

// loopConn is what a connection keeps between reads: the start of a request
// not read in full, and answers the socket did not take yet.
type loopConn struct {
	in      []byte
	pending []byte
}

func (l *eventLoop) run() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	l.buf = make([]byte, 64<<10)
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(l.ep, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("epoll_wait: %w", err)
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			c := l.conns[fd]
			if c == nil {
				c = &loopConn{}
				l.conns[fd] = c
			}
			if !l.serve(fd, c, ev.Events) {
				delete(l.conns, fd)
				unix.Close(fd)
			}
		}
	}
}

// serve handles one readiness event of fd; false means close it.
func (l *eventLoop) serve(fd int, c *loopConn, events uint32) bool {
	if events&unix.EPOLLOUT != 0 && len(c.pending) > 0 {
		if !l.flush(fd, c, nil) {
			return false
		}
		if len(c.pending) > 0 {
			return true
		}
	}
	if len(c.pending) > 0 {
		return true // read no more until the client takes its answers
	}
	if events&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR|unix.EPOLLRDHUP) == 0 {
		return true
	}
	n, err := unix.Read(fd, l.buf)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
		return true
	}
	if err != nil || n == 0 {
		return false
	}
	data := l.buf[:n]
	if len(c.in) > 0 {
		c.in = append(c.in, data...)
		data = c.in
	}
	out := l.out[:0]
	for {
		end := bytes.Index(data, []byte("\r\n\r\n"))
		if end < 0 {
			break
		}
		line, _, _ := bytes.Cut(data[:end], []byte("\r\n"))
		var path []byte
		if f := bytes.Fields(line); len(f) == 3 {
			path = f[1]
		}
		out = append(out, l.p.answer(path)...)
		data = data[end+4:]
	}
	c.in = append(c.in[:0], data...)
	l.out = out
	return l.flush(fd, c, out)
}

// flush writes c's pending answers, then out; what the socket does not take
// waits in c.pending, with EPOLLOUT asked for; false means close.
func (l *eventLoop) flush(fd int, c *loopConn, out []byte) bool {
	had := len(c.pending) > 0
	buf := out
	if had {
		c.pending = append(c.pending, out...)
		buf = c.pending
	}
	for len(buf) > 0 {
		n, err := unix.Write(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			break
		}
		if err != nil {
			return false
		}
		buf = buf[n:]
	}
	c.pending = append(c.pending[:0], buf...)
	if waiting := len(c.pending) > 0; waiting != had {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}
		if waiting {
			ev.Events |= unix.EPOLLOUT
		}
		if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_MOD, fd, &ev); err != nil {
			return false
		}
	}
	return true
}
