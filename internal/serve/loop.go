package serve

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Fast is a Server's fast path: the requests its event loop answers itself,
// without net/http. The loop owns every connection the Server accepts; it
// answers, in order and in one write per read, each request parseFast
// understands and Lookup knows, and hands any other request over, for good,
// with its connection and the bytes already read, to the http.Server and its
// handler. Correctness never depends on the fast path: what it does not
// answer, net/http does.
type Fast struct {
	// Lookup returns the answer to GET path (HTTP/1.1, status 200): its header
	// lines ("Name: value\r\n" each, without Date, Content-Length and
	// Connection, which the loop adds) and its body; ok false leaves the
	// request to the handler. It runs on the loop's thread, for every fast
	// request: it must not block, and neither it nor its caller may modify
	// the slices it returns.
	Lookup func(path []byte) (header, body []byte, ok bool)
	// Answered, if not nil, is called after each fast answer is written (or
	// queued on a slow client) with how long it took since its request was read.
	Answered func(time.Duration)
}

// eventLoop serves a Server's connections on one thread: epoll_wait, then for
// each ready connection one read, every complete request answered, one write.
type eventLoop struct {
	ep, wake int // the epoll instance; an eventfd that wakes it
	fast     *Fast
	handed   *handedListener

	mu       sync.Mutex
	added    []int // accepted connections the loop has not taken yet
	draining bool
	abort    bool
	closed   bool  // run has returned, or is closing ep and wake
	err      error // why, if the epoll instance broke

	conns   map[int]*fastConn // owned by the loop's goroutine
	buf     []byte            // one read's bytes
	out     []byte            // the answers to one read's requests, written from here
	date    []byte            // the Date header's value, kept current to the second
	dateSec int64
	done    chan struct{} // closed when run returns: every connection handed over or closed
}

// fastConn is what the loop keeps of a connection between reads.
type fastConn struct {
	in      []byte    // the start of a request, to hand over with the connection
	out     []byte    // answers the socket did not take yet; nil when none
	handing bool      // hand over once out is written
	polled  bool      // EPOLLOUT asked for: out waits for the socket
	used    bool      // a request came: the connection is not new
	moved   time.Time // when it was accepted, or last read or written
}

// maxQueued bounds the answers to one read's pipelined requests: past it,
// the rest of them go to net/http, which answers one at a time.
const maxQueued = 256 << 10

// How long the loop's connections may wait (variables for the tests).
var (
	// firstRequestWait: a connection that sent nothing for so long is
	// closed, as http.Server's ReadHeaderTimeout would.
	firstRequestWait = readHeaderTimeout
	// stuckWait: a connection idle between requests, or whose client took
	// none of its queued answers, for so long is closed.
	stuckWait  = idleTimeout
	sweepEvery = time.Second
)

// epollWait is unix.EpollWait (a variable for the tests).
var epollWait = unix.EpollWait

// errLoopStopped is add's error once the loop has returned.
var errLoopStopped = errors.New("serve: the event loop has stopped")

func newEventLoop(fast *Fast, handed *handedListener) (*eventLoop, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(ep)
		return nil, os.NewSyscallError("eventfd", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(ep)
		unix.Close(wake)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	return &eventLoop{
		ep: ep, wake: wake, fast: fast, handed: handed,
		conns: map[int]*fastConn{}, buf: make([]byte, 64<<10), done: make(chan struct{}),
	}, nil
}

// add gives c to the loop, which takes its descriptor; c is closed. Once the
// loop has returned, add closes the descriptor and returns errLoopStopped
// (with the error that stopped it). Safe for concurrent use.
func (l *eventLoop) add(c net.Conn) error {
	defer c.Close()
	sc, ok := c.(syscall.Conn)
	if !ok {
		return errors.New("serve: the fast path needs a connection with a descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	// A dup of its descriptor, which closing c leaves open and out of Go's netpoller.
	fd, dupErr := -1, error(nil)
	if err := rc.Control(func(s uintptr) { fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return err
	}
	if dupErr != nil {
		return os.NewSyscallError("fcntl", dupErr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return os.NewSyscallError("fcntl", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		unix.Close(fd)
		if l.err != nil {
			return fmt.Errorf("%w: %w", errLoopStopped, l.err)
		}
		return errLoopStopped
	}
	l.added = append(l.added, fd)
	l.poke()
	return nil
}

// drain makes the loop end every connection once its answers are written
// (see retire) and return; stop closes the ones left instead.
func (l *eventLoop) drain() { l.set(func() { l.draining = true }) }
func (l *eventLoop) stop()  { l.set(func() { l.abort = true }) }

func (l *eventLoop) set(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f()
	l.poke()
}

// poke wakes the loop, if it has not returned; under l.mu, which keeps the
// eventfd open.
func (l *eventLoop) poke() {
	if l.closed {
		return
	}
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0} // a uint64 1 in host order (little endian)
	_, _ = unix.Write(l.wake, one)
}

// run serves until drain or stop has emptied the loop, or the epoll instance
// breaks; then it closes every connection left, and its descriptors.
func (l *eventLoop) run() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err := l.serveAll()
	l.mu.Lock()
	l.closed, l.err = true, err
	added := l.added
	l.added = nil
	l.mu.Unlock()
	for _, fd := range added {
		unix.Close(fd)
	}
	for fd := range l.conns {
		l.close(fd)
	}
	unix.Close(l.ep)
	unix.Close(l.wake)
	close(l.done)
}

// serveAll is run's loop; it returns nil once drained or stopped.
func (l *eventLoop) serveAll() error {
	events := make([]unix.EpollEvent, 128)
	draining := false
	swept := time.Now()
	for {
		n, err := epollWait(l.ep, events, int(sweepEvery/time.Millisecond))
		if err != nil && !errors.Is(err, unix.EINTR) {
			return os.NewSyscallError("epoll_wait", err)
		}
		for _, ev := range events[:max(n, 0)] {
			fd := int(ev.Fd)
			if fd == l.wake {
				var abort bool
				draining, abort = l.woken()
				if abort {
					return nil
				}
				continue
			}
			if c := l.conns[fd]; c != nil {
				l.serve(fd, c, ev.Events, draining)
			}
		}
		if draining && len(l.conns) == 0 {
			return nil
		}
		if now := time.Now(); now.Sub(swept) >= sweepEvery {
			l.sweep(now)
			swept = now
		}
	}
}

// sweep closes the connections that have waited too long: for a first
// request, for the next one, or for the client to take its answers.
func (l *eventLoop) sweep(now time.Time) {
	for fd, c := range l.conns {
		wait := stuckWait
		if !c.used {
			wait = firstRequestWait
		}
		if now.Sub(c.moved) > wait {
			l.close(fd)
		}
	}
}

// woken takes the connections added and the flags; when draining, it hands
// over every connection with nothing left to write.
func (l *eventLoop) woken() (draining, abort bool) {
	var b [8]byte
	_, _ = unix.Read(l.wake, b[:])
	l.mu.Lock()
	added := l.added
	l.added = nil
	draining, abort = l.draining, l.abort
	l.mu.Unlock()
	for _, fd := range added {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}
		if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			unix.Close(fd)
			continue
		}
		l.conns[fd] = &fastConn{moved: time.Now()}
	}
	if draining && !abort {
		for fd, c := range l.conns {
			if len(c.out) == 0 {
				l.retire(fd, c)
			}
		}
	}
	return draining, abort
}

// serve handles one readiness event of fd.
func (l *eventLoop) serve(fd int, c *fastConn, events uint32, draining bool) {
	if len(c.out) > 0 {
		if events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 || !l.flush(fd, c, c.out) {
			return
		}
		if len(c.out) > 0 {
			return
		}
	}
	switch {
	case c.handing:
		l.handOver(fd, c)
		return
	case draining:
		l.retire(fd, c)
		return
	}
	n, err := unix.Read(fd, l.buf)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
		return
	}
	if err != nil || n == 0 {
		l.close(fd)
		return
	}
	read := time.Now()
	c.used, c.moved = true, read
	data := l.buf[:n]
	out := l.out[:0]
	answered := 0
	for len(data) > 0 && len(out) < maxQueued {
		path, size, r := parseFast(data)
		if r != fastGET {
			break
		}
		header, body, ok := l.fast.Lookup(path)
		if !ok {
			break
		}
		out = l.appendAnswer(out, header, body, read)
		data = data[size:]
		answered++
	}
	if len(data) > 0 { // a request the loop does not answer, or past maxQueued
		c.in = append(c.in[:0], data...)
		c.handing = true
	}
	l.out = out
	if answered > 0 && !l.flush(fd, c, out) {
		return
	}
	if l.fast.Answered != nil && answered > 0 {
		d := time.Since(read)
		for range answered {
			l.fast.Answered(d)
		}
	}
	if c.handing && len(c.out) == 0 {
		l.handOver(fd, c)
	}
}

// appendAnswer appends a 200 response of header and body to out.
func (l *eventLoop) appendAnswer(out, header, body []byte, now time.Time) []byte {
	if s := now.Unix(); s != l.dateSec {
		l.dateSec, l.date = s, now.UTC().AppendFormat(l.date[:0], http.TimeFormat)
	}
	out = append(out, "HTTP/1.1 200 OK\r\n"...)
	out = append(out, header...)
	out = append(out, "Date: "...)
	out = append(out, l.date...)
	out = append(out, "\r\nContent-Length: "...)
	out = strconv.AppendInt(out, int64(len(body)), 10)
	out = append(out, "\r\n\r\n"...)
	return append(out, body...)
}

// flush writes buf, c's answers: c.out, or the loop's out when c.out is
// empty. What the socket does not take waits for EPOLLOUT in c.out (copied
// from the loop's buffer, so that c.out is no larger than what waits); once
// all is written, c.out is nil: an idle connection holds no buffer. It
// reports false if it closed the connection.
func (l *eventLoop) flush(fd int, c *fastConn, buf []byte) bool {
	for len(buf) > 0 {
		n, err := unix.Write(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			break
		}
		if err != nil {
			l.close(fd)
			return false
		}
		buf = buf[n:]
		c.moved = time.Now()
	}
	switch {
	case len(buf) == 0:
		c.out = nil
	case len(c.out) == 0:
		c.out = append(make([]byte, 0, len(buf)), buf...) // the rest of the loop's buffer
	default:
		c.out = buf // the rest of c.out
	}
	if waiting := len(c.out) > 0; waiting != c.polled {
		// While answers wait, the loop reads no more requests of the
		// connection, and watches EPOLLOUT only: EPOLLRDHUP, level-triggered,
		// would report a client that shut its side for writing at every wait
		// (EPOLLERR and EPOLLHUP are reported anyway).
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}
		if waiting {
			ev.Events = unix.EPOLLOUT
		}
		if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_MOD, fd, &ev); err != nil {
			l.close(fd)
			return false
		}
		c.polled = waiting
	}
	return true
}

// retire ends a connection whose answers are written, in a drain: closed if
// it is idle between requests, as http.Server.Shutdown closes idle
// connections; handed over if a request has come, for net/http to answer it
// with Connection: close, or if it is new.
func (l *eventLoop) retire(fd int, c *fastConn) {
	n, err := unix.Read(fd, l.buf)
	switch {
	case n > 0:
		c.in = append(c.in[:0], l.buf[:n]...)
	case n == 0 && err == nil, err != nil && !errors.Is(err, unix.EAGAIN):
		l.close(fd) // the client closed it
		return
	case c.used:
		l.close(fd) // idle between requests
		return
	}
	// A request came, or none yet on a new connection, whose client may send
	// its first one in a moment: Drain gives it net/http's grace.
	l.handOver(fd, c)
}

// handOver gives the connection, with the bytes read and not answered, to
// the http.Server, for good.
func (l *eventLoop) handOver(fd int, c *fastConn) {
	delete(l.conns, fd)
	_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, fd, nil) // a dup would keep it registered
	f := os.NewFile(uintptr(fd), "tcp")
	nc, err := net.FileConn(f) // a dup, in Go's netpoller
	f.Close()
	if err != nil {
		return // out of descriptors: the client sees the connection close
	}
	if !l.handed.hand(&replayConn{Conn: nc, buffered: c.in}) {
		nc.Close()
	}
}

func (l *eventLoop) close(fd int) {
	delete(l.conns, fd)
	unix.Close(fd)
}
