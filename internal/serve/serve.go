// Package serve serves a worker's HTTP handler on the port every worker shares:
// from the master's socket, taken in turn with the other workers (fork mode), or
// from a socket of its own bound with SO_REUSEPORT (external mode); and it stops
// without dropping a request. It knows nothing of the bus or of the handler.
package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// IsListener reports whether fd is an open socket that listens.
func IsListener(fd int) bool {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return false
	}
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	return err == nil && v == 1
}

// Listen returns the listening socket inherited as fd, when fd > 0, accepted from
// in turn with the other workers (see fifoListener); else a socket of its own
// bound to addr with SO_REUSEPORT, so that every worker of a pod can bind it (the
// kernel spreads the connections over the workers' sockets).
func Listen(fd int, addr string, log *slog.Logger) (net.Listener, error) {
	if fd > 0 {
		fifo, err := newFIFOListener(fd)
		if err == nil {
			return fifo, nil
		}
		if !errors.Is(err, errNotTCP) {
			return nil, err
		}
		log.Info("the inherited listener is not plain TCP: accepting through the netpoller, connections not dealt in turn")
		f := os.NewFile(uintptr(fd), "listener")
		defer f.Close()
		ln, err := net.FileListener(f)
		if err != nil {
			return nil, fmt.Errorf("inherited listener: %w", err)
		}
		return ln, nil
	}
	lc := net.ListenConfig{Control: reusePort}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}

func reusePort(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// Server is an http.Server that tracks its connections, so that Drain can stop
// it without dropping a request.
type Server struct {
	http.Server

	// Fast, if set before Serve, is the fast path: an event loop owns the
	// accepted connections and answers the requests it can, handing the
	// others over to the http.Server (see [Fast]).
	Fast *Fast

	draining atomic.Bool // every response says Connection: close

	loop   *eventLoop      // with Fast, once Serve started it
	handed *handedListener // with Fast: the connections net/http serves
	served chan error      // with Fast: the http.Server's Serve on handed

	mu      sync.Mutex
	conns   map[*trackedConn]struct{} // open and not hijacked
	changed chan struct{}             // while draining, closed and replaced at every state change
}

// trackedConn is an accepted connection with its state. A request's two state
// changes (active, then idle) are an atomic store each: the map, its lock and
// the clock are for a connection's first and last.
type trackedConn struct {
	net.Conn
	state atomic.Int32 // an http.ConnState
	since time.Time    // when it was accepted
}

// ReadFrom and CloseWrite keep what net/http looks for on a *net.TCPConn:
// sendfile for bodies from files, and a half-close before a connection closes.
func (c *trackedConn) ReadFrom(r io.Reader) (int64, error) { return io.Copy(c.Conn, r) }

func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// How long a connection may wait for its first request's head, and between
// requests, before the server closes it.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
)

// newConnGrace is how long Drain waits for a connection that was accepted but
// has not sent a request yet (a client that connects ahead of time may never).
const newConnGrace = 2 * time.Second

// NewServer returns a Server of h that logs its errors to log.
func NewServer(h http.Handler, log *slog.Logger) *Server {
	s := &Server{conns: make(map[*trackedConn]struct{}), changed: make(chan struct{})}
	s.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
	s.ConnState = s.track
	s.ReadHeaderTimeout = readHeaderTimeout
	s.IdleTimeout = idleTimeout
	s.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	return s
}

// Serve serves the connections of ln, tracking each (see Drain), until ln is
// closed; call it once. With Fast, the event loop and the http.Server behind
// it outlive Serve: Drain stops them. If the loop stops on its own (its epoll
// instance broke, which closes its connections), Serve returns an error
// wrapping the cause when the next connection comes; call Drain then too.
func (s *Server) Serve(ln net.Listener) error {
	if s.Fast == nil {
		return s.Server.Serve(trackingListener{Listener: ln, s: s})
	}
	s.handed = newHandedListener(ln.Addr(), s.tracked)
	loop, err := newEventLoop(s.Fast, s.handed)
	if err != nil {
		return err
	}
	s.loop, s.served = loop, make(chan error, 1)
	go loop.run()                                        // until Drain
	go func() { s.served <- s.Server.Serve(s.handed) }() // until Drain
	var wait time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			var t interface{ Temporary() bool }
			if !errors.As(err, &t) || !t.Temporary() {
				return err
			}
			wait = min(max(2*wait, 5*time.Millisecond), time.Second) // as http.Server.Serve
			s.ErrorLog.Printf("http: Accept error: %v; retrying in %v", err, wait)
			time.Sleep(wait)
			continue
		}
		wait = 0
		switch err := loop.add(c); {
		case errors.Is(err, errLoopStopped):
			// The epoll instance broke (Drain has not begun: Serve still
			// runs). A worker in that state is best restarted: return, and
			// the listener's next connections go to the other workers.
			return err
		case err != nil:
			s.ErrorLog.Printf("serve: fast path: %v", err)
		}
	}
}

// trackingListener hands each accepted connection to the Server as a trackedConn.
type trackingListener struct {
	net.Listener
	s *Server
}

func (l trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.s.tracked(c), nil
}

// tracked returns c as a trackedConn the Server tracks from now on: Drain
// waits for it as for a new connection until net/http sets its state.
func (s *Server) tracked(c net.Conn) net.Conn {
	tc := &trackedConn{Conn: c, since: time.Now()}
	s.mu.Lock()
	s.conns[tc] = struct{}{}
	s.mu.Unlock()
	return tc
}

func (s *Server) track(c net.Conn, st http.ConnState) {
	tc, ok := c.(*trackedConn)
	if !ok {
		return
	}
	tc.state.Store(int32(st))
	gone := st == http.StateClosed || st == http.StateHijacked
	if !gone && !s.draining.Load() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if gone {
		delete(s.conns, tc)
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// busy reports whether a connection has a request under way or may still send
// its first one, and returns a channel closed at the next state change.
func (s *Server) busy() (bool, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		st := http.ConnState(c.state.Load())
		if st == http.StateActive || (st == http.StateNew && time.Since(c.since) < newConnGrace) {
			return true, s.changed
		}
	}
	return false, s.changed
}

// Drain stops the server without dropping a request. Call it once the listener
// is closed and Serve has returned: connections still queued on a shared socket
// then go to the other workers. http.Server.Shutdown alone closes, without a
// reply, a connection whose first request it reads after shutdown began; and
// SetKeepAlivesEnabled(false) closes idle connections without Shutdown's care
// for one whose next request was just read, so the client may send it again
// elsewhere after it ran here. So Drain answers every response from now on with
// Connection: close (each busy connection closes after its response), waits
// until no connection is busy, and only then shuts down, which closes the idle
// ones safely. ctx bounds the whole wait.
func (s *Server) Drain(ctx context.Context) error {
	s.draining.Store(true)
	if s.loop != nil {
		// The loop closes its idle connections once their answers are written,
		// and hands over those with a request, which net/http answers with
		// Connection: close.
		s.loop.drain()
		select {
		case <-s.loop.done:
		case <-ctx.Done():
			s.loop.stop()
			<-s.loop.done
		}
		s.handed.Close()
		defer func() { <-s.served }()
	}
	for {
		busy, changed := s.busy()
		if !busy {
			break
		}
		select {
		case <-changed:
		case <-time.After(50 * time.Millisecond): // a new connection's grace may run out
		case <-ctx.Done():
			return s.Shutdown(ctx)
		}
	}
	return s.Shutdown(ctx)
}
