package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/yolkgo/yolk/bus"
)

// Deploying yolk as a user does: bin/source, then bin/master, which starts
// the agent and the workers. The harness talks to the running master as
// `master status` does: it reads the control credential from the master's
// state file (master.json in its run directory) and asks over the bus.

// source is a running bin/source.
type source struct {
	p       *proc
	url     string // http://127.0.0.1:port
	natsURL string // nats://127.0.0.1:port
}

// startSource starts bin/source on free loopback ports with 100 keys, k0 to k99.
func (h *harness) startSource(ctx context.Context) (*source, error) {
	return h.startSourceKeys(ctx, 100)
}

// startSourceKeys is startSource with keys keys, k0 to k(keys-1).
func (h *harness) startSourceKeys(ctx context.Context, keys int) (*source, error) {
	p, err := startProc("source", h.bins.path("source"), nil, baseEnv(
		"SOURCE_ADDR=127.0.0.1:0", "SOURCE_NATS_ADDR=127.0.0.1:0", "SOURCE_KEYS="+strconv.Itoa(keys),
		"YOLK_LOG_FORMAT=json"))
	if err != nil {
		return nil, err
	}
	line, err := p.waitLine(ctx, 20*time.Second, `"msg":"source ready"`)
	if err != nil {
		p.kill()
		return nil, err
	}
	var rec struct{ HTTP, NATS string }
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.HTTP == "" || rec.NATS == "" {
		p.kill()
		return nil, fmt.Errorf("source ready line without addresses: %s", line)
	}
	return &source{p: p, url: "http://" + rec.HTTP, natsURL: "nats://" + rec.NATS}, nil
}

// sourceStats is GET /stats of the source.
type sourceStats struct {
	Fetches int64  `json:"fetches"`
	Checks  int64  `json:"checks"`
	Version string `json:"version"`
}

func (s *source) stats(ctx context.Context) (sourceStats, error) {
	var st sourceStats
	err := getJSON(ctx, s.url+"/stats", &st)
	return st, err
}

// put sets key to the JSON value and returns the new version.
func (s *source) put(ctx context.Context, client *http.Client, key, value string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, s.url+"/data/"+key, strings.NewReader(value))
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var v struct{ Version string }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("PUT /data/%s: %s (%v)", key, resp.Status, err)
	}
	return v.Version, nil
}

// master is a running bin/master.
type master struct {
	p      *proc
	runDir string
	ctl    *bus.Conn // the control connection, once dialled
}

// startMaster starts bin/master in fork mode with workers workers, its run
// directory under the harness's temporary directory, and extra environment.
func (h *harness) startMaster(name string, workers int, extra ...string) (*master, error) {
	runDir, err := os.MkdirTemp(h.tmp, "run-")
	if err != nil {
		return nil, err
	}
	env := baseEnv(
		"YOLK_RUN_DIR="+runDir,
		"YOLK_WORKERS="+strconv.Itoa(workers),
		"YOLK_HTTP_ADDR=127.0.0.1:0",
		"YOLK_LOG_FORMAT=json",
	)
	env = append(env, h.cfg.yolkEnv...)
	p, err := startProc(name, h.bins.path("master"), nil, append(env, extra...))
	if err != nil {
		return nil, err
	}
	return &master{p: p, runDir: runDir}, nil
}

// startServing starts a master with workers workers that reads src, and waits
// until it serves and every worker is ready; it returns the HTTP address. The
// caller stops the master; on an error it is already stopped.
func (h *harness) startServing(ctx context.Context, workers int, src *source) (*master, string, yolkStatus, error) {
	return h.startServingAs(ctx, "master", workers, src)
}

// startServingAs is startServing with the process's name in the harness's
// messages and extra environment (a fleet host's).
func (h *harness) startServingAs(ctx context.Context, name string, workers int, src *source, extra ...string) (*master, string, yolkStatus, error) {
	env := append([]string{"YOLK_SOURCE_URL=" + src.url, "YOLK_PUSH_URL=" + src.natsURL}, extra...)
	m, err := h.startMaster(name, workers, env...)
	if err != nil {
		return nil, "", yolkStatus{}, err
	}
	addr, err := m.waitReady(ctx)
	if err != nil {
		m.stop()
		return nil, "", yolkStatus{}, err
	}
	st, err := m.waitAllReady(ctx, workers)
	if err != nil {
		m.stop()
		return nil, "", yolkStatus{}, err
	}
	return m, addr, st, nil
}

// waitReady waits for the master's "yolk ready" and returns the HTTP address.
func (m *master) waitReady(ctx context.Context) (string, error) {
	line, err := m.p.waitLine(ctx, 60*time.Second, `"msg":"yolk ready"`)
	if err != nil {
		return "", err
	}
	var rec struct{ Addr string }
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Addr == "" {
		return "", fmt.Errorf("yolk ready line without addr: %s", line)
	}
	return rec.Addr, nil
}

// control dials the master's bus with the control credential of its state
// file (what `master status` does), once.
func (m *master) control(ctx context.Context) (*bus.Conn, error) {
	if m.ctl != nil {
		return m.ctl, nil
	}
	b, err := os.ReadFile(filepath.Join(m.runDir, "master.json"))
	if err != nil {
		return nil, fmt.Errorf("master state: %w", err)
	}
	var st struct {
		Bus, User, Secret string
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("master state: %w", err)
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := bus.Dial(dctx, bus.Options{
		URL: st.Bus, User: st.User, Password: st.Secret, ID: bus.ControlID, Role: bus.RoleControl,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return nil, fmt.Errorf("dial the master's bus: %w", err)
	}
	m.ctl = conn
	return conn, nil
}

// yolkStatus is the master's answer to status (internal/command/master/status.go).
type yolkStatus struct {
	Master    yolkProc   `json:"master"`
	Reloading bool       `json:"reloading"`
	Children  []yolkProc `json:"children"`
}

type yolkProc struct {
	Role  string `json:"role"`
	PID   int    `json:"pid"`
	State string `json:"state"`
	Cache *struct {
		Version   string    `json:"version"`
		By        string    `json:"by"`
		UpdatedAt time.Time `json:"updatedAt"`
	} `json:"cache"`
}

// status asks the master for every process's state.
func (m *master) status(ctx context.Context) (yolkStatus, error) {
	var st yolkStatus
	conn, err := m.control(ctx)
	if err != nil {
		return st, err
	}
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	msg, err := conn.RequestMaster(rctx, "status", nil)
	if err != nil {
		return st, err
	}
	err = msg.Decode(&st)
	return st, err
}

// workers returns the workers in st, and whether all want of them are ready.
func (st yolkStatus) workers(want int) ([]yolkProc, bool) {
	var ws []yolkProc
	ready := 0
	for _, c := range st.Children {
		if c.Role == "worker" {
			ws = append(ws, c)
			if c.State == "ready" {
				ready++
			}
		}
	}
	return ws, ready == want && len(ws) == want
}

// pids returns the master's pid and its children's, and tracks the children
// for cleanup.
func (st yolkStatus) pids() []ProcRSS {
	out := []ProcRSS{{Role: "master", PID: st.Master.PID}}
	for _, c := range st.Children {
		trackPID(c.PID)
		out = append(out, ProcRSS{Role: c.Role, PID: c.PID})
	}
	return out
}

// waitAllReady polls the status until the agent and want workers are ready,
// each worker with a cache version.
func (m *master) waitAllReady(ctx context.Context, want int) (yolkStatus, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := m.status(ctx)
		if err == nil {
			ws, ok := st.workers(want)
			for _, w := range ws {
				ok = ok && w.Cache != nil && w.Cache.Version != ""
			}
			if ok {
				st.pids()
				return st, nil
			}
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("master: not all %d workers ready with data within 30s (last error: %v)", want, err)
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop closes the control connection and stops the master with SIGTERM.
func (m *master) stop() error {
	if m.ctl != nil {
		m.ctl.Close()
		m.ctl = nil
	}
	return m.p.stop(20 * time.Second)
}

// getJSON GETs url and decodes the JSON answer into v.
func getJSON(ctx context.Context, url string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
