package serve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sharedSocket returns a listening socket and n descriptors of it, as the
// workers of one master hold it.
func sharedSocket(t *testing.T, n int) (addr string, fds []int) {
	t.Helper()
	var lc net.ListenConfig
	lc.SetMultipathTCP(false) // as the master listens
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for range n {
		fd, err := unix.Dup(int(f.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
	}
	return ln.Addr().String(), fds
}

// serveCount accepts from l until it is closed, counting connections, and
// closes each after reading its first byte.
func serveCount(l net.Listener, count *int, mu *sync.Mutex, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		mu.Lock()
		*count++
		mu.Unlock()
		go func() { c.Read(make([]byte, 1)); c.Close() }()
	}
}

// With two listeners waiting on one socket, connections made one after the
// other are dealt to both, not all to one.
func TestFIFOListenerDealsConnectionsInTurn(t *testing.T) {
	addr, fds := sharedSocket(t, 2)
	var (
		mu     sync.Mutex
		counts [2]int
		wg     sync.WaitGroup
		ls     []*fifoListener
	)
	for i, fd := range fds {
		l, err := newFIFOListener(fd)
		if err != nil {
			t.Fatal(err)
		}
		if got := l.Addr().String(); got != addr {
			t.Errorf("Addr() = %s, want %s", got, addr)
		}
		ls = append(ls, l)
		wg.Add(1)
		go serveCount(l, &counts[i], &mu, &wg)
	}
	const n = 40
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte{'x'})
		c.Read(make([]byte, 1)) // until the server closes it
		c.Close()
	}
	for _, l := range ls {
		l.Close()
	}
	wg.Wait()
	if counts[0]+counts[1] != n {
		t.Fatalf("accepted %v, want %d in all", counts, n)
	}
	t.Logf("connections per listener: %v", counts)
	for i, c := range counts {
		if c < n/4 {
			t.Errorf("listener %d accepted %d of %d connections (%v); want them dealt in turn", i, c, n, counts)
		}
	}
}

// Close stops accepting soon; the socket stays open for the other workers, and
// connections still queued on it go to them.
func TestFIFOListenerCloseLeavesTheSocketToOthers(t *testing.T) {
	addr, fds := sharedSocket(t, 2)
	const tick = time.Minute // Close must not wait for it
	a, err := newFIFOListenerTick(fds[0], tick)
	if err != nil {
		t.Fatal(err)
	}
	waitInAccept(t, a)
	closed := make(chan error, 1)
	go func() {
		for {
			c, err := a.Accept()
			if err != nil {
				closed <- err
				return
			}
			c.Close()
		}
	}()
	start := time.Now()
	a.Close()
	select {
	case err := <-closed:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Accept returned %v after Close, want at once", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept still blocked 10s after Close: the signal did not interrupt accept")
	}

	// A connection made now waits in the queue until another worker takes it.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := newFIFOListenerTick(fds[1], tick)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got, err := b.Accept()
	if err != nil {
		t.Fatalf("the other listener: %v", err)
	}
	got.Close()
}

func TestFIFOListenerRejectsANonSocket(t *testing.T) {
	var p [2]int
	if err := unix.Pipe(p[:]); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if _, err := newFIFOListener(p[0]); err == nil {
		t.Fatal("newFIFOListener(pipe) succeeded")
	}
}

// An MPTCP socket (Go's default listener where the kernel has MPTCP) is left to
// the netpoller: its accept would not time out.
func TestFIFOListenerLeavesMPTCPAlone(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	if p, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); p != unix.IPPROTO_MPTCP {
		t.Skipf("no MPTCP listener here (protocol %d)", p)
	}
	if _, err := newFIFOListener(fd); !errors.Is(err, errNotTCP) {
		t.Fatalf("newFIFOListener(MPTCP socket) = %v, want errNotTCP", err)
	}
}

// waitInAccept polls until l's thread is blocked in accept4 (its
// /proc/self/task/<tid>/syscall shows the call's number).
func waitInAccept(t *testing.T, l *fifoListener) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if tid := l.tid.Load(); tid != 0 {
			b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/syscall", tid))
			if err != nil {
				t.Skipf("cannot see the thread's system call: %v", err)
			}
			if f := strings.Fields(string(b)); len(f) > 0 && f[0] == strconv.Itoa(unix.SYS_ACCEPT4) {
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("the listener's thread never blocked in accept4")
}
