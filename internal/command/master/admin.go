package master

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/yolkgo/yolk/internal/cli"
)

// admin is the master's own HTTP server on YOLK_ADMIN_ADDR: the status page
// and the service's metrics. It reads; nothing it serves changes the service.
// It owns its goroutines: Close returns after the server, the event feed and
// every request have ended.
type admin struct {
	mux    *http.ServeMux
	srv    *http.Server
	ln     net.Listener
	status func() statusReply
	feed   *feed
	// hosts are the Host headers a request may carry (the listen address,
	// localhost, 127.0.0.1 and [::1] with its port); nil when the server
	// listens beyond loopback, where any is taken.
	hosts        map[string]bool
	writeTimeout time.Duration // of each write to an event stream

	cancel context.CancelFunc // ends every request's context
	wg     sync.WaitGroup     // Serve, the feed, the requests
	mu     sync.Mutex
	closed bool
}

// The status page: plain HTML, CSS and JavaScript, no build step, nothing
// fetched from elsewhere.
//
//go:embed page
var page embed.FS

// Timing of the event stream: at most one view per eventGap (the model may
// change many times in a burst), a comment every keepAlive so that proxies
// and the browser keep an idle stream open, and at most writeTimeout for a
// write to a client: one that stops reading is dropped.
const (
	eventGap     = 100 * time.Millisecond
	keepAlive    = 15 * time.Second
	writeTimeout = 10 * time.Second
)

// newAdmin listens on cfg.AdminAddr (off: it returns nil, and a nil *admin
// serves nothing). status is the model's view, and subscribe the model's
// change notifications ([model.subscribe]). When the default address is taken
// (another master on this host has it), the master runs without. It serves
// until Close, or until ctx is done; the caller calls Close in both cases.
//
// On a loopback address it answers only requests whose Host is that address,
// localhost, 127.0.0.1 or [::1] (with the port), so that a web page cannot
// read it through DNS rebinding; on any other address (0.0.0.0 in a
// container) it takes any Host, and whoever can reach it can read it.
func newAdmin(ctx context.Context, cfg config, status func() statusReply, subscribe func() (<-chan struct{}, func()), log *slog.Logger) (*admin, error) {
	addr := cfg.AdminAddr
	if addr == "off" {
		return nil, nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil && !cfg.adminSet {
		log.Warn("no status page: its default address is taken; set YOLK_ADMIN_ADDR to another, or off", "addr", addr, "err", err)
		return nil, nil
	}
	if err != nil {
		return nil, cli.BadValue("YOLK_ADMIN_ADDR", addr, "listen: %v", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	a := &admin{mux: http.NewServeMux(), ln: ln, status: status, feed: newFeed(), cancel: cancel,
		hosts: allowedHosts(addr, ln.Addr()), writeTimeout: writeTimeout}
	a.srv = &http.Server{
		Handler:           a.guard(a.mux),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	a.mux.HandleFunc("GET /api/status", a.serveStatus)
	a.mux.HandleFunc("GET /api/events", a.serveEvents)
	static, _ := fs.Sub(page, "page") // page is a literal directory of this package
	a.mux.Handle("GET /", pageHeaders(http.FileServerFS(static)))
	a.wg.Go(func() {
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server", "err", err)
		}
	})
	a.wg.Go(func() { a.feed.run(ctx, status, subscribe, log) })
	return a, nil
}

// allowedHosts are the Host headers of requests to a server that listens on
// addr (as configured) at bound: nil (any) unless bound is a loopback address.
func allowedHosts(addr string, bound net.Addr) map[string]bool {
	tcp, ok := bound.(*net.TCPAddr)
	if !ok || !tcp.IP.IsLoopback() {
		return nil
	}
	port := strconv.Itoa(tcp.Port)
	hosts := make(map[string]bool)
	for _, h := range []string{addr, bound.String(), "localhost", "127.0.0.1", "[::1]"} {
		if !strings.Contains(h, "]:") && strings.Count(h, ":") != 1 {
			h += ":" + port
		}
		hosts[strings.ToLower(h)] = true
		if port == "80" { // a browser leaves the default port out
			hosts[strings.ToLower(strings.TrimSuffix(h, ":80"))] = true
		}
	}
	return hosts
}

// guard serves h unless Close has begun, and refuses (421 Misdirected
// Request) a request for another Host. Close waits for the requests it let in.
func (a *admin) guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.hosts != nil && !a.hosts[strings.ToLower(r.Host)] {
			http.Error(w, "this server answers only for its own address (localhost, 127.0.0.1 or [::1] with its port)", http.StatusMisdirectedRequest)
			return
		}
		a.mu.Lock()
		if a.closed {
			a.mu.Unlock()
			http.Error(w, "the master is stopping", http.StatusServiceUnavailable)
			return
		}
		a.wg.Add(1)
		a.mu.Unlock()
		defer a.wg.Done()
		h.ServeHTTP(w, r)
	})
}

// Addr is where the admin server listens, "" when it is off.
func (a *admin) Addr() string {
	if a == nil {
		return ""
	}
	return a.ln.Addr().String()
}

// Handle adds a route to the admin server; on a nil *admin it does nothing.
func (a *admin) Handle(pattern string, h http.Handler) {
	if a != nil {
		a.mux.Handle(pattern, h)
	}
}

// Close stops the admin server and returns when its goroutines have ended:
// Serve, the event feed, and every request (their context is cancelled, and
// their connections closed). After Close, nothing of the admin server calls
// status. On a nil *admin it does nothing.
func (a *admin) Close() {
	if a == nil {
		return
	}
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.cancel()
	a.srv.Close()
	a.wg.Wait()
}

// serveStatus is GET /api/status: the model's view, as `master status --json` prints it.
func (a *admin) serveStatus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(a.status())
}

// serveEvents is GET /api/events: server-sent events, each a "status" event
// whose data is the view (as GET /api/status), sent at once and then after
// each change of the model, at most one per eventGap: the feed's, encoded
// once for every client. The stream ends when the client goes, stops reading
// (a write that takes writeTimeout), or the admin server closes.
func (a *admin) serveEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(a.writeTimeout)) // not supported: no deadline
		_, err := w.Write(b)
		return err == nil && rc.Flush() == nil
	}
	ev, fresh, stale := a.feed.join()
	defer a.feed.leave()
	if stale { // the feed is building a newer view: wait for it
		ev = nil
	}
	ctx := r.Context()
	ping := time.NewTicker(keepAlive)
	defer ping.Stop()
	for {
		if ev != nil && !write(ev) {
			return
		}
		ev = nil
		select {
		case <-ctx.Done():
			return
		case <-ping.C:
			if !write([]byte(": keepalive\n\n")) {
				return
			}
		case <-fresh:
			ev, fresh = a.feed.latest()
		}
	}
}

// A feed builds the view once per change of the model (at most one per
// eventGap), and only while someone listens, and hands the same encoded
// event to every client of GET /api/events. Safe for concurrent use.
type feed struct {
	wake chan struct{} // a client came to a stale feed

	mu      sync.Mutex
	event   []byte        // the latest "status" event, encoded
	fresh   chan struct{} // closed when a newer event is published
	clients int
	stale   bool // the model changed since event was built, or none was
}

func newFeed() *feed {
	return &feed{wake: make(chan struct{}, 1), fresh: make(chan struct{}), stale: true}
}

// join adds a client and returns the latest event, a channel closed when a
// newer one comes, and whether the latest is out of date (a newer one is on
// the way).
func (f *feed) join() (event []byte, fresh <-chan struct{}, stale bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clients++
	if f.stale {
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
	return f.event, f.fresh, f.stale
}

func (f *feed) leave() {
	f.mu.Lock()
	f.clients--
	f.mu.Unlock()
}

// latest returns the latest event and a channel closed when a newer one comes.
func (f *feed) latest() ([]byte, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.event, f.fresh
}

// run builds and publishes the view after each change, while there are
// clients, until ctx is done.
func (f *feed) run(ctx context.Context, status func() statusReply, subscribe func() (<-chan struct{}, func()), log *slog.Logger) {
	changes, done := subscribe()
	defer done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changes:
		case <-f.wake:
		}
		f.mu.Lock()
		listened := f.clients > 0
		f.stale = true
		f.mu.Unlock()
		if !listened {
			continue
		}
		b, err := json.Marshal(status())
		if err != nil {
			log.Error("encode the status view", "err", err)
			continue
		}
		f.mu.Lock()
		f.event = fmt.Appendf(nil, "event: status\ndata: %s\n\n", b)
		f.stale = false
		close(f.fresh)
		f.fresh = make(chan struct{})
		f.mu.Unlock()
		t := time.NewTimer(eventGap) // let a burst of changes become one view
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// pageHeaders serves h with the page's headers: a browser fetches only from this
// server, runs no inline script, shows the page in no frame, and asks again
// before it uses a copy.
func pageHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}
