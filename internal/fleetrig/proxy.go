package fleetrig

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy forwards TCP connections from a loopback port to a target address, so that
// a test can cut a link (a host's leaf connection, say) and restore it.
//
// Its methods are safe for concurrent use. Close stops it and waits for its
// goroutines.
type Proxy struct {
	target string
	addr   string // host:port it listens on, kept across a Cut

	mu     sync.Mutex
	ln     net.Listener // nil while cut or closed
	conns  map[net.Conn]struct{}
	cuts   int
	closed bool
	wg     sync.WaitGroup // the accept loop and each connection's copiers
}

// dialTimeout bounds how long a proxied connection waits for its target.
const dialTimeout = 2 * time.Second

// NewProxy listens on a free port of 127.0.0.1 and forwards each connection to
// target (host:port).
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	p := &Proxy{target: target, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	return p, nil
}

// Addr is the host:port the proxy listens on; it stays the same across Cut and
// Restore.
func (p *Proxy) Addr() string { return p.addr }

// Target is where the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// serve makes ln the listener and starts its accept loop. Call with p.mu held or
// before p is shared.
func (p *Proxy) serve(ln net.Listener) {
	p.ln = ln
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by Cut or Close
			}
			p.forward(ln, c)
		}
	})
}

// forward connects c, accepted on ln, to the target and copies both ways until
// either side ends or the proxy cuts them.
func (p *Proxy) forward(ln net.Listener, c net.Conn) {
	t, err := net.DialTimeout("tcp", p.target, dialTimeout)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.ln != ln { // cut while dialing
		p.mu.Unlock()
		c.Close()
		t.Close()
		return
	}
	p.conns[c], p.conns[t] = struct{}{}, struct{}{}
	p.mu.Unlock()
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		// one direction ended: end the pair, as a real link's end would
		c.Close()
		t.Close()
		p.mu.Lock()
		delete(p.conns, c)
		delete(p.conns, t)
		p.mu.Unlock()
	}
	p.wg.Go(func() { pipe(t, c) })
	p.wg.Go(func() { pipe(c, t) })
}

// Cut closes every forwarded connection and stops listening: a new connection is
// refused until Restore. Cutting a cut proxy does nothing.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return
	}
	p.ln.Close()
	p.ln = nil
	p.cuts++
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// Restore listens again on the same address. It fails if the proxy was closed, or
// if another program took the port in the meantime.
func (p *Proxy) Restore() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("proxy: restore: closed")
	}
	if p.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return fmt.Errorf("proxy: restore: %w", err)
	}
	p.serve(ln)
	return nil
}

// Cuts is how many times the proxy was cut.
func (p *Proxy) Cuts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cuts
}

// Close cuts every connection, stops listening for good and waits for the proxy's
// goroutines.
func (p *Proxy) Close() error {
	p.Cut()
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}
