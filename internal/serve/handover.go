package serve

import (
	"net"
	"sync"
)

// handedListener is the net/http side of the fast path: the event loop hands
// it, for good, each connection with a request the loop does not answer
// itself, and http.Server.Serve accepts them from it. Handing never waits for
// Accept: the connections queue.
type handedListener struct {
	addr  net.Addr
	track func(net.Conn) net.Conn // wraps each connection as it is handed
	ready chan struct{}           // a token while conns may not be empty

	mu     sync.Mutex
	conns  []net.Conn
	closed bool
}

func newHandedListener(addr net.Addr, track func(net.Conn) net.Conn) *handedListener {
	return &handedListener{addr: addr, track: track, ready: make(chan struct{}, 1)}
}

// hand queues c, wrapped by track, for Accept; false if the listener is
// closed (c is then the caller's to close). It does not wait.
func (l *handedListener) hand(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conns = append(l.conns, l.track(c))
	l.signal()
	return true
}

// signal leaves a token in ready, if none is there; under l.mu.
func (l *handedListener) signal() {
	select {
	case l.ready <- struct{}{}:
	default:
	}
}

// Accept returns the next connection handed over; once the listener is
// closed and every connection handed before has been accepted, net.ErrClosed.
func (l *handedListener) Accept() (net.Conn, error) {
	for {
		l.mu.Lock()
		if len(l.conns) > 0 {
			c := l.conns[0]
			l.conns[0] = nil
			l.conns = l.conns[1:]
			if len(l.conns) > 0 || l.closed {
				l.signal() // for the next Accept
			}
			l.mu.Unlock()
			return c, nil
		}
		if l.closed {
			l.signal() // for any other Accept
			l.mu.Unlock()
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: net.ErrClosed}
		}
		l.mu.Unlock()
		<-l.ready
	}
}

// Close makes hand refuse, and Accept return net.ErrClosed once it has
// returned the connections handed before: each was given a request to answer.
func (l *handedListener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	l.signal()
	return nil
}

// Addr is the address of the listener the connections came from.
func (l *handedListener) Addr() net.Addr { return l.addr }

// replayConn is a connection handed over with the bytes the loop had read
// from it and not answered: its first reads return them.
type replayConn struct {
	net.Conn
	buffered []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.buffered) > 0 {
		n := copy(p, c.buffered)
		c.buffered = c.buffered[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite keeps what net/http looks for on a *net.TCPConn: a half-close
// before a connection closes.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
