package master

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/yolkgo/yolk/internal/cli"
)

// admin is the master's own HTTP server on YOLK_ADMIN_ADDR: the status page
// and the service's metrics. It reads; nothing it serves changes the service.
type admin struct {
	mux    *http.ServeMux
	srv    *http.Server
	ln     net.Listener
	status func() statusReply
}

// newAdmin listens on cfg.AdminAddr (off: it returns nil, and a nil *admin
// serves nothing). status is the model's view. When the default address is
// taken (another master on this host has it), the master runs without.
func newAdmin(ctx context.Context, cfg config, status func() statusReply, log *slog.Logger) (*admin, error) {
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
	a := &admin{mux: http.NewServeMux(), ln: ln, status: status}
	a.srv = &http.Server{
		Handler:           a.mux,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	a.mux.HandleFunc("GET /api/status", a.serveStatus)
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
