// Package health serves a process's health on a unix socket, and asks it: so
// that a probe run inside a container reaches the process of that container
// and no other (a TCP port may be shared by every worker of a pod). It knows
// nothing of configuration or of the bus.
package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// Errors of [Listen] that say the path cannot be used.
var (
	ErrNotSocket = errors.New("exists and is not a socket")
	ErrInUse     = errors.New("another process serves its health there")
)

// Server serves GET /healthz and GET /readyz on a unix socket.
type Server struct {
	ln   net.Listener
	path string

	// Note, if set before Serve, is the text of GET /healthz instead of "ok":
	// how the live process finds the service ("degraded: the agent is
	// missing"). The answer stays 200: the process is alive, and a restart
	// of it would mend nothing. Safe for concurrent use, as ready.
	Note func() string
}

// Listen binds the health socket at path (mode 0600: probes run as the
// same user). A socket file left by a process that is gone is removed first;
// one that a live process still answers on, or a file that is not a socket,
// is an error. Serve it, or Close it.
func Listen(path string) (*Server, error) {
	if st, err := os.Lstat(path); err == nil {
		if st.Mode().Type() != fs.ModeSocket {
			return nil, ErrNotSocket
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, ErrInUse
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale health socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("health socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("health socket: %w", err)
	}
	return &Server{ln: ln, path: path}, nil
}

// Path returns the socket's path.
func (h *Server) Path() string { return h.path }

// Close closes the socket and removes its file; Serve returns.
func (h *Server) Close() error { return h.ln.Close() } // a unix listener unlinks its file

// Serve answers GET /healthz with 200 while the process runs, and GET /readyz
// with 200 when ready returns nil, else 503 and ready's error. ready is
// called on each probe and must be safe for concurrent use. Serve returns when
// ctx is done, after closing the socket and removing its file.
func (h *Server) Serve(ctx context.Context, ready func() error, log *slog.Logger) error {
	return h.ServeChecks(ctx, nil, ready, log)
}

// ServeChecks is Serve with a liveness check: GET /healthz answers 503 and
// live's error when live returns one (a process that runs but is stuck), and
// /readyz then fails too. A nil live is Serve's: alive while it runs.
func (h *Server) ServeChecks(ctx context.Context, live, ready func() error, log *slog.Logger) error {
	if live == nil {
		live = func() error { return nil }
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := live(); err != nil {
			http.Error(w, "not alive: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		note := "ok"
		if h.Note != nil {
			note = h.Note()
		}
		io.WriteString(w, note+"\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		err := live()
		if err == nil {
			err = ready()
		}
		if err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	err := srv.Serve(h.ln)
	h.ln.Close()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("health socket: %w", err)
}

// checkTimeout bounds one check.
const checkTimeout = 2 * time.Second

// Check asks the process serving the health socket at path: GET
// /healthz, or /readyz when ready is set, within 2s. It prints the answer to
// stdout and returns nil on 200, else an error saying why.
func Check(ctx context.Context, path string, ready bool, stdout io.Writer) error {
	endpoint := "/healthz"
	if ready {
		endpoint = "/readyz"
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://health"+endpoint, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: GET %s on %s: %w", endpoint, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	text := strings.TrimSpace(string(body))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: GET %s on %s: %s: %s", endpoint, path, resp.Status, text)
	}
	fmt.Fprintln(stdout, text)
	return nil
}
