// Package serve serves a worker's HTTP handler on the port every worker shares:
// from the master's socket, taken in turn with the other workers (fork mode), or
// from a socket of its own bound with SO_REUSEPORT (external mode); and it stops
// without dropping a request. It knows nothing of the bus or of the handler.
package serve

import (
	"context"
	"errors"
	"fmt"
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

	draining atomic.Bool // every response says Connection: close

	mu      sync.Mutex
	conns   map[net.Conn]connState
	changed chan struct{} // closed and replaced at every connection state change
}

type connState struct {
	state http.ConnState
	since time.Time
}

// newConnGrace is how long Drain waits for a connection that was accepted but
// has not sent a request yet (a client that connects ahead of time may never).
const newConnGrace = 2 * time.Second

// NewServer returns a Server of h that logs its errors to log.
func NewServer(h http.Handler, log *slog.Logger) *Server {
	s := &Server{conns: make(map[net.Conn]connState), changed: make(chan struct{})}
	s.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
	s.ConnState = s.track
	s.ReadHeaderTimeout = 10 * time.Second
	s.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	return s
}

func (s *Server) track(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st {
	case http.StateClosed, http.StateHijacked:
		delete(s.conns, c)
	default:
		s.conns[c] = connState{state: st, since: time.Now()}
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// busy reports whether a connection has a request under way or may still send
// its first one, and returns a channel closed at the next state change.
func (s *Server) busy() (bool, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		if c.state == http.StateActive || (c.state == http.StateNew && time.Since(c.since) < newConnGrace) {
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
