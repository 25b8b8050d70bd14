package master

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/yolkgo/yolk/internal/cli"
)

// admin is the master's own HTTP server on YOLK_ADMIN_ADDR: the status page
// and the service's metrics. It reads; nothing it serves changes the service.
type admin struct {
	mux       *http.ServeMux
	srv       *http.Server
	ln        net.Listener
	status    func() statusReply
	subscribe func() (<-chan struct{}, func())
}

// The status page: plain HTML, CSS and JavaScript, no build step, nothing
// fetched from elsewhere.
//
//go:embed page
var page embed.FS

// Timing of the event stream: at most one view per eventGap (the model may
// change many times in a burst), and a comment every keepAlive so that
// proxies and the browser keep an idle stream open.
const (
	eventGap  = 100 * time.Millisecond
	keepAlive = 15 * time.Second
)

// newAdmin listens on cfg.AdminAddr (off: it returns nil, and a nil *admin
// serves nothing). status is the model's view, and subscribe the model's
// change notifications ([model.subscribe]). When the default address is taken
// (another master on this host has it), the master runs without.
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
	a := &admin{mux: http.NewServeMux(), ln: ln, status: status, subscribe: subscribe}
	a.srv = &http.Server{
		Handler:           a.mux,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	a.mux.HandleFunc("GET /api/status", a.serveStatus)
	a.mux.HandleFunc("GET /api/events", a.serveEvents)
	static, _ := fs.Sub(page, "page") // page is a literal directory of this package
	a.mux.Handle("GET /", pageHeaders(http.FileServerFS(static)))
	go func() {
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server", "err", err)
		}
	}()
	return a, nil
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

// Close stops the admin server: its long-lived streams end with their
// requests' context (the master's).
func (a *admin) Close() {
	if a != nil {
		a.srv.Close()
	}
}

// serveStatus is GET /api/status: the model's view, as `master status --json` prints it.
func (a *admin) serveStatus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(a.status())
}

// serveEvents is GET /api/events: server-sent events, each a "status" event
// whose data is the view (as GET /api/status), sent at once and then after
// each change of the model, at most one per eventGap. The stream ends when the
// client goes or the master stops (the request's context is the master's).
func (a *admin) serveEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	changes, done := a.subscribe()
	defer done()
	ctx := r.Context()
	ping := time.NewTicker(keepAlive)
	defer ping.Stop()
	for {
		b, err := json.Marshal(a.status())
		if err != nil {
			return
		}
		if _, err := fmt.Fprintf(w, "event: status\ndata: %s\n\n", b); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		sent := time.Now()
	wait:
		for {
			select {
			case <-ctx.Done():
				return
			case <-ping.C:
				if _, err := io.WriteString(w, ": keepalive\n\n"); err != nil || rc.Flush() != nil {
					return
				}
			case <-changes:
				break wait
			}
		}
		if gap := eventGap - time.Since(sent); gap > 0 { // let a burst of changes become one view
			t := time.NewTimer(gap)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// pageHeaders serves h with the page's headers: a browser fetches only from this
// server, runs no inline script, and asks again before it uses a copy.
func pageHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}
