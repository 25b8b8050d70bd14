package serve

import (
	"errors"
	"net"
	"testing"
	"time"
)

// TestHandedListenerQueues: hand does not wait for Accept; after Close,
// Accept still returns every connection handed before, then net.ErrClosed,
// and hand refuses.
func TestHandedListenerQueues(t *testing.T) {
	var tracked int
	l := newHandedListener(&net.TCPAddr{}, func(c net.Conn) net.Conn { tracked++; return c })
	const n = 100
	var want []net.Conn
	handed := make(chan struct{})
	go func() {
		defer close(handed)
		for range n {
			a, b := net.Pipe()
			t.Cleanup(func() { a.Close(); b.Close() })
			if !l.hand(a) {
				t.Error("hand before Close = false, want true")
			}
			want = append(want, a)
		}
	}()
	select {
	case <-handed:
	case <-time.After(10 * time.Second):
		t.Fatalf("hand of %d connections with no Accept still waits after 10s", n)
	}
	if tracked != n {
		t.Errorf("track called %d times for %d connections", tracked, n)
	}
	l.Close()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if l.hand(a) {
		t.Error("hand after Close = true, want false")
	}
	for i := range n {
		c, err := l.Accept()
		if err != nil || c != want[i] {
			t.Fatalf("Accept %d after Close = %v, %v; want connection %d", i, c, err, i)
		}
	}
	if c, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept of an empty closed listener = %v, %v; want net.ErrClosed", c, err)
	}
}

// TestHandedListenerAcceptWaits: an Accept waiting on an empty listener
// returns the next connection handed, or net.ErrClosed at Close.
func TestHandedListenerAcceptWaits(t *testing.T) {
	l := newHandedListener(&net.TCPAddr{}, func(c net.Conn) net.Conn { return c })
	type accepted struct {
		c   net.Conn
		err error
	}
	got := make(chan accepted)
	accept := func() {
		c, err := l.Accept()
		got <- accepted{c, err}
	}
	next := func() accepted {
		select {
		case r := <-got:
			return r
		case <-time.After(10 * time.Second):
			t.Fatal("Accept still waits after 10s")
			return accepted{}
		}
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go accept()
	l.hand(a)
	if r := next(); r.c != a || r.err != nil {
		t.Errorf("Accept = %v, %v; want the connection handed", r.c, r.err)
	}
	go accept()
	l.Close()
	if r := next(); !errors.Is(r.err, net.ErrClosed) {
		t.Errorf("Accept at Close = %v, %v; want net.ErrClosed", r.c, r.err)
	}
}
