package serve

import (
	"net"
	"sync"
)

// handedListener is the net/http side of the fast path: the event loop hands
// it, for good, each connection with a request the loop does not answer
// itself, and http.Server.Serve accepts them from it.
type handedListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newHandedListener(addr net.Addr) *handedListener {
	return &handedListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// hand passes c to Accept; false if the listener is closed (c is then the
// caller's to close).
func (l *handedListener) hand(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

// Accept returns the next connection handed over, or net.ErrClosed after Close.
func (l *handedListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: net.ErrClosed}
	}
}

// Close makes Accept return net.ErrClosed and hand refuse.
func (l *handedListener) Close() error {
	l.once.Do(func() { close(l.done) })
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
