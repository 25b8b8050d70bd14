package master

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yolkgo/yolk/internal/masterapi"
)

func TestAdminPageAndEvents(t *testing.T) {
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	m := newModel(fleetOf(1))
	view := func() statusReply { return m.view(processStatus{Role: "master"}, statusReply{Mode: "fork"}) }
	a, err := newAdmin(ctx, config{AdminAddr: "127.0.0.1:0", adminSet: true}, view, m.subscribe, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	base := "http://" + a.Addr()

	const csp = "default-src 'self'; frame-ancestors 'none'"
	for path, ctype := range map[string]string{"/": "text/html", "/app.js": "text/javascript", "/style.css": "text/css"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) ||
			resp.Header.Get("Content-Security-Policy") != csp {
			t.Errorf("GET %s = %s, %q, CSP %q; want 200, %s, %s", path, resp.Status,
				resp.Header.Get("Content-Type"), resp.Header.Get("Content-Security-Policy"), ctype, csp)
		}
	}
	// Nothing but GET.
	for _, path := range []string{"/", "/api/status", "/api/events"} {
		resp, err := http.Post(base+path, "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST %s = %s, want 405", path, resp.Status)
		}
	}

	// The stream: a view at once, another after a change of the model, and
	// its end when the master stops.
	resp, err := http.Get(base + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("GET /api/events Content-Type %q, want text/event-stream", ct)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func(want string) string {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stream ended, waiting for %q", want)
				}
				if strings.Contains(l, want) {
					return l
				}
			case <-deadline:
				t.Fatalf("no line with %q on the stream within 5s", want)
			}
		}
	}
	next(`"mode":"fork"`)
	m.report("w0", "worker", masterapi.State{Version: "v7", By: "push", UpdatedAt: time.Now()}, time.Now())
	next(`"version":"v7"`)
	stop()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-lines:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("the event stream outlives the master's context")
		}
	}
}

func TestAdminOff(t *testing.T) {
	a, err := newAdmin(t.Context(), config{AdminAddr: "off"}, nil, nil, slog.New(slog.DiscardHandler))
	if a != nil || err != nil || a.Addr() != "" {
		t.Errorf("newAdmin(off) = %v, %v; want nil, nil", a, err)
	}
	a.Close() // a nil admin closes quietly
}

// get GETs url with the Host header host ("" for the URL's), and returns the
// response's status code.
func get(t *testing.T, url, host string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// On loopback the admin server answers only for its own names: a page of
// another site, rebound to 127.0.0.1, cannot read it. Bound beyond loopback
// it answers for any.
func TestAdminHost(t *testing.T) {
	m := newModel(fleetOf(1))
	view := func() statusReply { return m.view(processStatus{Role: "master"}, statusReply{}) }
	open := func(addr string) *admin {
		a, err := newAdmin(t.Context(), config{AdminAddr: addr, adminSet: true}, view, m.subscribe, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.Close)
		return a
	}
	a := open("127.0.0.1:0")
	_, port, _ := net.SplitHostPort(a.Addr())
	for host, want := range map[string]int{
		"":                          200,
		"localhost:" + port:         200,
		"LocalHost:" + port:         200,
		"127.0.0.1:" + port:         200,
		"[::1]:" + port:             200,
		"evil.example:" + port:      421,
		"localhost":                 421, // another port
		"127.0.0.1.nip.io:" + port:  421,
		"localhost.evil.example:80": 421,
	} {
		for _, path := range []string{"/api/status", "/api/events", "/"} {
			if path == "/api/events" && want == 200 {
				continue // a stream: its 200 does not end
			}
			if got := get(t, "http://"+a.Addr()+path, host); got != want {
				t.Errorf("GET %s with Host %q = %d, want %d", path, host, got, want)
			}
		}
	}

	wide := open("0.0.0.0:0")
	_, port, _ = net.SplitHostPort(wide.Addr())
	if got := get(t, "http://127.0.0.1:"+port+"/api/status", "status.example.com"); got != 200 {
		t.Errorf("GET /api/status on 0.0.0.0 with Host status.example.com = %d, want 200", got)
	}
}

// Every client of the event stream gets the same view, built once per
// change, not once per client.
func TestAdminEventsShared(t *testing.T) {
	m := newModel(fleetOf(1))
	var views atomic.Int32
	view := func() statusReply {
		views.Add(1)
		return m.view(processStatus{Role: "master"}, statusReply{})
	}
	a, err := newAdmin(t.Context(), config{AdminAddr: "127.0.0.1:0", adminSet: true}, view, m.subscribe, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	const clients = 4
	var streams []*bufio.Reader
	for range clients {
		resp, err := http.Get("http://" + a.Addr() + "/api/events")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		streams = append(streams, bufio.NewReader(resp.Body))
	}
	// until reads a stream's lines until one holds want (the body is closed
	// at the end of the test, which ends a read that waits)
	until := func(r *bufio.Reader, want string) {
		t.Helper()
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("stream ended, waiting for %q: %v", want, err)
			}
			if strings.Contains(l, want) {
				return
			}
		}
	}
	for _, r := range streams {
		until(r, "event: status")
	}
	m.report("w0", "worker", masterapi.State{Version: "v8", By: "push", UpdatedAt: time.Now()}, time.Now())
	for _, r := range streams {
		until(r, `"version":"v8"`)
	}
	if n := views.Load(); n > 3 {
		t.Errorf("view() called %d times for %d clients and one change, want at most 3", n, clients)
	}
}

// A client that stops reading is dropped after the write timeout, and Close
// waits for nothing of it.
func TestAdminEventsSlowClient(t *testing.T) {
	m := newModel(fleetOf(1))
	big := strings.Repeat("x", 1<<20)
	view := func() statusReply { return m.view(processStatus{Role: "master"}, statusReply{Bus: big}) }
	a, err := newAdmin(t.Context(), config{AdminAddr: "127.0.0.1:0", adminSet: true}, view, m.subscribe, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	a.writeTimeout = 200 * time.Millisecond
	c, err := net.Dial("tcp", a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(c, "GET /api/events HTTP/1.1\r\nHost: %s\r\n\r\n", a.Addr()) // and never read
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		m.report("w0", "worker", masterapi.State{Version: fmt.Sprint("v", i), By: "push"}, time.Now())
		a.feed.mu.Lock()
		clients := a.feed.clients
		a.feed.mu.Unlock()
		if i > 0 && clients == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a client that reads nothing still holds its stream after 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	closed := make(chan struct{})
	go func() { a.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return within 5s")
	}
}
