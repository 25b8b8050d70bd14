package serve

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// acceptTick bounds each blocking accept(2) (SO_RCVTIMEO). Close interrupts the
// call at once with a signal; the tick is for the rare signal that comes just
// before the call.
const acceptTick = 20 * time.Millisecond

// fifoListener accepts from the listening socket the master shares with every
// worker, in blocking accept(2) calls. Linux queues the threads blocked in accept
// on one socket and wakes one per connection, the longest waiting first, so the
// connections are dealt in turn to the workers that are free to take one. Go's
// netpoller instead wakes every worker for each connection, and the one already
// running wins: in practice most connections of a burst went to one worker (57
// of wrk's 64 with 2 workers), which then answered for most of the load alone.
//
// Every connection accept returned is handed to Accept, even after Close, and
// only then does Accept report the listener closed: a connection this worker
// took off the shared queue is served here, never dropped.
type fifoListener struct {
	fd   int // this process's descriptor of the shared socket, in blocking mode
	addr net.Addr

	conns chan acceptResult
	stop  chan struct{}
	once  sync.Once
	tid   atomic.Int32 // the thread blocked in accept, once known
}

type acceptResult struct {
	c   net.Conn
	err error
}

// errNotTCP: the socket is not plain TCP. An MPTCP listener, Go's default since
// 1.24, ignores SO_RCVTIMEO in accept, so Close could not stop a blocked accept.
var errNotTCP = errors.New("not a plain TCP socket")

// newFIFOListener takes over fd, a listening socket (parseConfig checked it), if
// it is plain TCP; else it returns errNotTCP and leaves fd open.
func newFIFOListener(fd int) (*fifoListener, error) {
	return newFIFOListenerTick(fd, acceptTick)
}

func newFIFOListenerTick(fd int, tick time.Duration) (*fifoListener, error) {
	if p, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil {
		return nil, fmt.Errorf("inherited listener: %w", err)
	} else if p != unix.IPPROTO_TCP {
		return nil, errNotTCP
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil, fmt.Errorf("inherited listener: %w", err)
	}
	addr := sockaddrTCP(sa)
	if addr == nil {
		return nil, errors.New("inherited listener: not a TCP socket")
	}
	// The socket's flags and options belong to the socket, shared by every worker;
	// each sets the same ones.
	if err := unix.SetNonblock(fd, false); err != nil {
		return nil, fmt.Errorf("inherited listener: %w", err)
	}
	tv := unix.NsecToTimeval(tick.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("inherited listener: %w", err)
	}
	l := &fifoListener{fd: fd, addr: addr, conns: make(chan acceptResult), stop: make(chan struct{})}
	go l.loop()
	return l, nil
}

func (l *fifoListener) loop() {
	defer close(l.conns)
	defer unix.Close(l.fd)
	// One thread, known to Close, so that a signal can interrupt its accept: a
	// socket call with SO_RCVTIMEO set returns EINTR even with SA_RESTART.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	l.tid.Store(int32(unix.Gettid()))
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		nfd, _, err := unix.Accept4(l.fd, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED) {
				continue // the tick ran out, or the client gave up first
			}
			if !resourceErr(err) {
				l.conns <- acceptResult{err: l.opErr(os.NewSyscallError("accept4", err))}
				return
			}
			// Out of descriptors or memory: net/http logs it, waits and asks again.
			l.conns <- acceptResult{err: l.opErr(temporary{os.NewSyscallError("accept4", err)})}
			continue
		}
		f := os.NewFile(uintptr(nfd), "tcp")
		c, err := net.FileConn(f) // a dup, in Go's netpoller
		f.Close()
		if err != nil {
			l.conns <- acceptResult{err: l.opErr(temporary{err})}
			continue
		}
		l.conns <- acceptResult{c: c}
	}
}

func (l *fifoListener) opErr(err error) error {
	return &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: err}
}

func resourceErr(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) || errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM)
}

// temporary marks an accept error that passes: http.Server.Serve waits and
// accepts again instead of returning.
type temporary struct{ error }

func (temporary) Temporary() bool { return true }
func (temporary) Timeout() bool   { return false }

func (t temporary) Unwrap() error { return t.error }

// Accept returns the next connection; after Close, the ones already accepted,
// then net.ErrClosed.
func (l *fifoListener) Accept() (net.Conn, error) {
	r, ok := <-l.conns
	if !ok {
		return nil, l.opErr(net.ErrClosed)
	}
	return r.c, r.err
}

// Close stops accepting; connections still queued on the shared socket go to the
// other workers. It interrupts a blocked accept with SIGURG, which the Go runtime
// takes as a preemption request and otherwise ignores.
func (l *fifoListener) Close() error {
	l.once.Do(func() {
		close(l.stop)
		if tid := l.tid.Load(); tid != 0 {
			// Harmless if the thread has left accept: the runtime ignores a SIGURG it
			// did not ask for.
			_ = unix.Tgkill(unix.Getpid(), int(tid), unix.SIGURG)
		}
	})
	return nil
}

// Addr is the shared socket's address.
func (l *fifoListener) Addr() net.Addr { return l.addr }

func sockaddrTCP(sa unix.Sockaddr) *net.TCPAddr {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]).To16(), Port: sa.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}
	}
	return nil
}
