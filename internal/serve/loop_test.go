package serve

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// loopConn is an event loop that the test drives itself (no run), with one
// connection: the loop's end of a socket pair, and the client's.
func loopConn(t *testing.T, body []byte) (l *eventLoop, server, client int, c *fastConn) {
	t.Helper()
	fast := &Fast{Lookup: func([]byte) ([]byte, []byte, bool) { return nil, body, true }}
	l, err := newEventLoop(fast, newHandedListener(&net.TCPAddr{}, func(c net.Conn) net.Conn { return c }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(l.ep); unix.Close(l.wake) })
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	server, client = fds[0], fds[1]
	t.Cleanup(func() { unix.Close(server); unix.Close(client) })
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(server)}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, server, &ev); err != nil {
		t.Fatal(err)
	}
	c = &fastConn{moved: time.Now()}
	l.conns[server] = c
	return l, server, client, c
}

// readAll reads what is queued on the nonblocking fd.
func readAll(t *testing.T, fd int, into []byte) []byte {
	t.Helper()
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EAGAIN) {
			return into
		}
		if err != nil || n == 0 {
			t.Fatalf("read from the client's end = %d, %v", n, err)
		}
		into = append(into, buf[:n]...)
	}
}

// checkAnswer checks that got is one answer of body.
func checkAnswer(t *testing.T, got, body []byte) {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(got)), nil)
	if err != nil {
		t.Fatalf("the client got %d bytes: %v", len(got), err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(b, body) {
		t.Fatalf("the client got a body of %d bytes, %v; want %d", len(b), err, len(body))
	}
}

// TestLoopIdleConnectionHoldsNoBuffer: once its answers are written, a
// connection keeps no buffer; while they wait, no more than what waits.
func TestLoopIdleConnectionHoldsNoBuffer(t *testing.T) {
	const get = "GET /data/k HTTP/1.1\r\nHost: x\r\n\r\n"
	t.Run("written at once", func(t *testing.T) {
		body := bytes.Repeat([]byte("s"), 16<<10)
		l, server, client, c := loopConn(t, body)
		if _, err := unix.Write(client, []byte(get)); err != nil {
			t.Fatal(err)
		}
		l.serve(server, c, unix.EPOLLIN, false)
		if c.out != nil {
			t.Errorf("after a full write, the connection holds %d bytes (capacity %d), want none", len(c.out), cap(c.out))
		}
		checkAnswer(t, readAll(t, client, nil), body)
	})
	t.Run("written in parts", func(t *testing.T) {
		body := bytes.Repeat([]byte("b"), 4<<20) // more than a socket pair takes
		l, server, client, c := loopConn(t, body)
		if _, err := unix.Write(client, []byte(get)); err != nil {
			t.Fatal(err)
		}
		l.serve(server, c, unix.EPOLLIN, false)
		if len(c.out) == 0 || cap(c.out) != len(c.out) {
			t.Errorf("the answer waits in %d bytes of capacity %d; want some, the capacity no larger", len(c.out), cap(c.out))
		}
		var got []byte
		for deadline := time.Now().Add(10 * time.Second); c.out != nil; {
			if time.Now().After(deadline) {
				t.Fatalf("%d bytes still wait after 10s", len(c.out))
			}
			got = readAll(t, client, got)
			l.serve(server, c, unix.EPOLLOUT, false)
		}
		checkAnswer(t, readAll(t, client, got), body)
	})
}
