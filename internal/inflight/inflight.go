// Package inflight counts work under way, so that a stop can wait for it
// with a deadline or a select, which a sync.WaitGroup cannot (and a
// WaitGroup must not see Add from zero while a Wait may be waking).
package inflight

import "sync"

// Counter counts work under way. The zero value is ready to use.
type Counter struct {
	mu   sync.Mutex
	n    int
	done chan struct{} // closed when n is back to 0
}

// Add counts one more piece of work under way.
func (c *Counter) Add() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == 0 {
		c.done = make(chan struct{})
	}
	c.n++
}

// Done counts one piece of work as ended.
func (c *Counter) Done() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n--; c.n == 0 {
		close(c.done)
	}
}

// Idle returns a channel that is closed once no work counted so far is under
// way.
func (c *Counter) Idle() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == 0 {
		return closed
	}
	return c.done
}

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()
