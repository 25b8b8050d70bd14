package serve

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fastFixture is a Server with a fast path for /data/{k0..k9}, whose handler
// answers the same bytes, and counts of who answered.
type fastFixture struct {
	addr            string
	srv             *Server
	ln              net.Listener
	served          chan error
	fast, handled   atomic.Int64
	fastHeaderLines []byte
}

func fastItem(path string) ([]byte, bool) {
	k, ok := strings.CutPrefix(path, "/data/")
	if !ok || len(k) != 2 || k[0] != 'k' || k[1] < '0' || k[1] > '9' {
		return nil, false
	}
	return []byte(`{"v":"` + k + `"}`), true
}

func startFast(t *testing.T) *fastFixture {
	t.Helper()
	f := &fastFixture{}
	var b bytes.Buffer
	http.Header{"Content-Type": {"application/json"}, "X-Test": {"1"}}.Write(&b)
	f.fastHeaderLines = b.Bytes()
	f.serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.handled.Add(1)
		v, ok := fastItem(r.URL.Path)
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Test", "1")
		w.Write(v)
	}), func(path []byte) ([]byte, []byte, bool) {
		v, ok := fastItem(string(path))
		if ok {
			f.fast.Add(1)
		}
		return f.fastHeaderLines, v, ok
	})
	return f
}

// serve starts f's Server on a loopback port, with h and a fast path of
// lookup, and stops it when the test ends.
func (f *fastFixture) serve(t *testing.T, h http.Handler, lookup func(path []byte) (headerLines, body []byte, ok bool)) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr, f.ln, f.served = ln.Addr().String(), ln, make(chan error, 1)
	f.srv = NewServer(h, slog.New(slog.DiscardHandler))
	f.srv.Fast = &Fast{Lookup: lookup}
	go func() { f.served <- f.srv.Serve(ln) }()
	t.Cleanup(func() { f.stop(t) })
}

func (f *fastFixture) stop(t *testing.T) {
	if f.ln == nil {
		return
	}
	f.ln.Close()
	<-f.served
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // t.Context ends before the cleanups
	defer cancel()
	if err := f.srv.Drain(ctx); err != nil {
		t.Errorf("Drain = %v", err)
	}
	f.ln = nil
}

// exchange writes raw on a new connection and reads n responses.
func exchange(t *testing.T, addr, raw string, n int) []*http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var out []*http.Response
	for i := range n {
		method, _, _ := strings.Cut(raw, " ")
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("response %d of %q: %v", i, raw, err)
		}
		resp.Body, _ = io.NopCloser(bytes.NewReader(mustRead(t, resp.Body))), resp.Body.Close()
		out = append(out, resp)
	}
	return out
}

func mustRead(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The fast path's answers are net/http's, but for the framing; what it does
// not understand, the handler answers.
func TestServeFastAnswersAsNetHTTP(t *testing.T) {
	f := startFast(t)
	get := func(target, extra string) string {
		return "GET " + target + " HTTP/1.1\r\nHost: x\r\n" + extra + "\r\n"
	}
	for _, tc := range []struct {
		name   string
		raw    string
		fast   bool
		status int
		body   string
	}{
		{"plain", get("/data/k1", ""), true, 200, `{"v":"k1"}`},
		{"other headers", get("/data/k2", "Accept: */*\r\nUser-Agent: t\r\n"), true, 200, `{"v":"k2"}`},
		{"unknown key", get("/data/zz", ""), false, 404, "404 page not found\n"},
		{"query", get("/data/k1?x=1", ""), false, 200, `{"v":"k1"}`},
		{"escaped", get("/data/%6b1", ""), false, 200, `{"v":"k1"}`},
		{"HEAD", "HEAD /data/k1 HTTP/1.1\r\nHost: x\r\n\r\n", false, 200, ""},
		{"HTTP/1.0", "GET /data/k1 HTTP/1.0\r\nHost: x\r\n\r\n", false, 200, `{"v":"k1"}`},
		{"Connection: close", get("/data/k1", "Connection: close\r\n"), false, 200, `{"v":"k1"}`},
		{"body", "GET /data/k1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab", false, 200, `{"v":"k1"}`},
		{"no Host", "GET /data/k1 HTTP/1.1\r\n\r\n", false, 400, ""},
		{"malformed Host", "GET /data/k1 HTTP/1.1\r\nHost: a b\r\n\r\n", false, 400, ""},
		{"unclean", get("/data/../data/k1", ""), false, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fast, handled := f.fast.Load(), f.handled.Load()
			resp := exchange(t, f.addr, tc.raw, 1)[0]
			body := string(mustRead(t, resp.Body))
			if tc.status != 0 && (resp.StatusCode != tc.status || !strings.HasPrefix(body, tc.body)) {
				t.Errorf("%q: %d %q, want %d %q", tc.raw, resp.StatusCode, body, tc.status, tc.body)
			}
			gotFast := f.fast.Load() > fast && f.handled.Load() == handled
			if gotFast != tc.fast {
				t.Errorf("%q answered by the fast path: %v, want %v", tc.raw, gotFast, tc.fast)
			}
			if tc.status == 200 {
				for _, h := range []string{"Content-Type", "X-Test", "Date", "Content-Length"} {
					if tc.raw[:4] == "GET " && resp.Header.Get(h) == "" {
						t.Errorf("%q: no %s header in %v", tc.raw, h, resp.Header)
					}
				}
			}
		})
	}
}

// A fast answer has the header of net/http's answer to the same request.
func TestServeFastSameHeader(t *testing.T) {
	f := startFast(t)
	fast := exchange(t, f.addr, "GET /data/k3 HTTP/1.1\r\nHost: x\r\n\r\n", 1)[0]
	slow := exchange(t, f.addr, "GET /data/k3?x HTTP/1.1\r\nHost: x\r\n\r\n", 1)[0]
	fast.Header.Del("Date")
	slow.Header.Del("Date")
	if a, b := fmt.Sprint(fast.Header), fmt.Sprint(slow.Header); a != b || fast.Proto != slow.Proto || fast.Status != slow.Status {
		t.Errorf("fast answer %s %s %s, net/http's %s %s %s", fast.Proto, fast.Status, a, slow.Proto, slow.Status, b)
	}
}

// Pipelined requests are answered in order, the fast ones before a request
// the handler answers, which then gets the rest of the connection.
func TestServeFastPipelined(t *testing.T) {
	f := startFast(t)
	raw := "GET /data/k1 HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /data/k2 HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /data/k3?slow HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /data/k4 HTTP/1.1\r\nHost: x\r\n\r\n"
	var got []string
	for _, r := range exchange(t, f.addr, raw, 4) {
		got = append(got, string(mustRead(t, r.Body)))
	}
	want := []string{`{"v":"k1"}`, `{"v":"k2"}`, `{"v":"k3"}`, `{"v":"k4"}`}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("pipelined answers %q, want %q", got, want)
	}
	if n, h := f.fast.Load(), f.handled.Load(); n != 2 || h != 2 {
		t.Errorf("fast answers %d, handler calls %d; want 2 and 2", n, h)
	}
}

// A client that sends its request a few bytes at a time is answered (by
// net/http, whose header timeout then applies).
func TestServeFastSlowClient(t *testing.T) {
	f := startFast(t)
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	raw := "GET /data/k5 HTTP/1.1\r\nHost: x\r\n\r\nGET /data/k6 HTTP/1.1\r\nHost: x\r\n\r\n"
	for i := 0; i < len(raw); i += 3 {
		if _, err := io.WriteString(c, raw[i:min(i+3, len(raw))]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // a slow client, not a synchronisation
	}
	br := bufio.NewReader(c)
	for _, want := range []string{`{"v":"k5"}`, `{"v":"k6"}`} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(mustRead(t, resp.Body)); got != want {
			t.Errorf("slow client got %q, want %q", got, want)
		}
	}
}

// Drain under load drops nothing: every request the fast path or the handler
// answered reached its client, and the clients got no error but the
// listener's refusal once it closed.
func TestServeFastDrainUnderLoad(t *testing.T) {
	for round := range 20 {
		f := startFast(t)
		var ok, bad atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
				defer c.CloseIdleConnections()
				for j := 0; ; j++ {
					select {
					case <-stop:
						return
					default:
					}
					target := fmt.Sprintf("/data/k%d", j%10)
					if i%4 == 0 && j%7 == 0 {
						target += "?slow"
					}
					resp, err := c.Get("http://" + f.addr + target)
					if err != nil {
						continue // the listener is closed: the other workers' turn
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						ok.Add(1)
					} else {
						bad.Add(1)
					}
				}
			})
		}
		deadline := time.Now().Add(10 * time.Second)
		for ok.Load() < 300 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		f.stop(t)
		close(stop)
		wg.Wait()
		if answered := f.fast.Load() + f.handled.Load(); answered != ok.Load() || bad.Load() != 0 {
			t.Fatalf("round %d: %d fast answers and %d by the handler, the clients got %d answers of 200 and %d others",
				round, f.fast.Load(), f.handled.Load(), ok.Load(), bad.Load())
		}
		if f.fast.Load() == 0 {
			t.Fatalf("round %d: no fast answer", round)
		}
	}
}

// TestServeFastClosesSilentConnections: a connection that never sends a
// request, or sends none after its last answer, is closed after its wait,
// as net/http's timeouts would close it.
func TestServeFastClosesSilentConnections(t *testing.T) {
	firstRequestWait, stuckWait, sweepEvery = 300*time.Millisecond, 600*time.Millisecond, 50*time.Millisecond
	t.Cleanup(func() { firstRequestWait, stuckWait, sweepEvery = readHeaderTimeout, idleTimeout, time.Second })
	f := startFast(t)
	silent, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	used, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer used.Close()
	start := time.Now()
	r := getK1(t, used)
	for _, c := range []struct {
		name string
		r    io.Reader
		conn net.Conn
		min  time.Duration
	}{{"silent", silent, silent, firstRequestWait}, {"idle after a request", r, used, stuckWait}} {
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.r.Read(make([]byte, 1))
		if n != 0 || err != io.EOF {
			t.Fatalf("%s connection: read %d bytes, %v; want it closed (EOF)", c.name, n, err)
		}
		if took := time.Since(start); took < c.min {
			t.Errorf("%s connection closed after %v, before its wait of %v", c.name, took, c.min)
		}
	}
	if f.fast.Load() != 1 || f.handled.Load() != 0 {
		t.Errorf("fast %d, handled %d; want the one request answered fast", f.fast.Load(), f.handled.Load())
	}
}

// getK1 asks for /data/k1 on c and reads the 200 answer; the reader holds
// what c sent after it.
func getK1(t *testing.T, c net.Conn) *bufio.Reader {
	t.Helper()
	if _, err := io.WriteString(c, "GET /data/k1 HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /data/k1 = %v, %v; want 200", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	return r
}

// TestServeFastBoundsQueuedAnswers: pipelined requests for large answers
// queue at most about maxQueued in the loop; net/http answers the rest, in
// order, on the same connection.
func TestServeFastBoundsQueuedAnswers(t *testing.T) {
	big := bytes.Repeat([]byte("b"), 100<<10) // three answers pass maxQueued
	f := &fastFixture{}
	f.serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.handled.Add(1)
		w.Write(big)
	}), func([]byte) ([]byte, []byte, bool) { f.fast.Add(1); return nil, big, true })

	const n = 8 // 800 KB of answers
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, strings.Repeat("GET /data/big HTTP/1.1\r\nHost: x\r\n\r\n", n)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	for i := range n {
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.Equal(body, big) {
			t.Fatalf("answer %d: %d bytes, %v; want %d", i, len(body), err, len(big))
		}
	}
	if q := f.fast.Load() * int64(len(big)); q > maxQueued+int64(len(big)) || f.handled.Load() == 0 || f.fast.Load()+f.handled.Load() != n {
		t.Errorf("fast %d (%d bytes queued), handled %d; want at most %d bytes fast, the rest handled", f.fast.Load(), q, f.handled.Load(), maxQueued)
	}
}

// TestServeFastLoopBreaks: when the loop's epoll instance breaks, the loop
// closes its connections and Serve returns the error, instead of handing
// connections to a loop that is gone; Drain then returns.
func TestServeFastLoopBreaks(t *testing.T) {
	var broken atomic.Bool
	epollWait = func(ep int, events []unix.EpollEvent, msec int) (int, error) {
		if broken.Load() {
			return 0, unix.EIO
		}
		return unix.EpollWait(ep, events, msec)
	}
	t.Cleanup(func() { epollWait = unix.EpollWait }) // after the fixture's stop
	f := startFast(t)
	idle, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idle.SetDeadline(time.Now().Add(10 * time.Second))
	r := getK1(t, idle)
	broken.Store(true)

	// Each new connection pokes the loop; the one after it has stopped makes
	// Serve return.
	deadline := time.Now().Add(10 * time.Second)
	var served error
	for served == nil {
		if time.Now().After(deadline) {
			t.Fatal("Serve still runs 10s after the loop broke")
		}
		if c, err := net.Dial("tcp", f.addr); err == nil {
			c.Close()
		}
		select {
		case served = <-f.served:
			f.served <- served // for the fixture's stop
		case <-time.After(10 * time.Millisecond):
		}
	}
	if !errors.Is(served, errLoopStopped) || !errors.Is(served, unix.EIO) {
		t.Errorf("Serve = %v, want errLoopStopped with EIO", served)
	}
	if n, err := r.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("read on a connection of the broken loop = %d, %v; want it closed", n, err)
	}
}

// TestServeFastHalfClosedClientIdles: a client that asks for more than the
// socket takes, shuts its side for writing and reads nothing does not make
// the loop spin while the answer waits.
func TestServeFastHalfClosedClientIdles(t *testing.T) {
	big := bytes.Repeat([]byte("b"), 4<<20)
	f := &fastFixture{}
	f.serve(t, http.NotFoundHandler(), func([]byte) ([]byte, []byte, bool) { return nil, big, true })

	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 16<<10) })
		return errors.Join(err, serr)
	}}
	c, err := d.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /data/big HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		var queued int
		rc.Control(func(fd uintptr) { queued, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
		if queued > 0 {
			break // the loop wrote what the socket took; the rest waits
		}
		if time.Now().After(deadline) {
			t.Fatal("no answer reached the client in 10s")
		}
	}
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start, used := time.Now(), cpu()
	for time.Since(start) < 300*time.Millisecond {
		time.Sleep(10 * time.Millisecond) // the measure's span, not a synchronisation
	}
	wall, used := time.Since(start), cpu()-used
	if used > wall/4 {
		t.Errorf("the process used %v of CPU in %v while an answer waited for a client that reads nothing", used, wall)
	}
}
