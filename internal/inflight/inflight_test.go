package inflight

import "testing"

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// TestCounter: Idle is closed with nothing under way, open while something
// is, and the channel handed out while it was closes when the last ends.
func TestCounter(t *testing.T) {
	var c Counter
	if !isClosed(c.Idle()) {
		t.Fatal("Idle of a new Counter is not closed")
	}
	c.Add()
	c.Add()
	idle := c.Idle()
	c.Done()
	if isClosed(idle) || isClosed(c.Idle()) {
		t.Fatal("Idle closed with one still under way")
	}
	c.Done()
	if !isClosed(idle) || !isClosed(c.Idle()) {
		t.Fatal("Idle not closed once all ended")
	}
	c.Add() // a new round
	if isClosed(c.Idle()) || !isClosed(idle) {
		t.Fatal("a new round reopened the old channel, or Idle is closed while one is under way")
	}
	c.Done()
}
