package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestExternalAgentMissing is a `docker kill` of the agent under compose: the
// platform does not restart it, and the master must say so. master status
// shows the agent missing and the service degraded, so do the status page's
// view and the master's health (alive, saying degraded; not ready); when an
// agent comes back, all is well again.
func TestExternalAgentMissing(t *testing.T) {
	x := newExternal(t)
	x.env = append(x.env, "YOLK_ADMIN_ADDR=127.0.0.1:0")
	master := x.startMaster(t)
	agent, agentID := x.startMember(t, "agent", "agent")
	_, workerID := x.startMember(t, "worker", "worker-1")
	master.logs.waitFor(t, 10*time.Second, `"msg":"yolk ready"`)
	var runDir string
	for _, kv := range x.env {
		if v, ok := strings.CutPrefix(kv, "YOLK_RUN_DIR="); ok {
			runDir = v
		}
	}
	admin := adminAddr(t, runDir)

	if code, out := healthcheck(t, "master", x.socket("master"), false); code != 0 || strings.TrimSpace(out) != "ok" {
		t.Errorf("master healthcheck with everyone there = %d %q, want 0 ok", code, out)
	}

	agent.cmd.Process.Signal(syscall.SIGKILL)
	agent.wait(t, 5*time.Second)

	var row extMember
	eventually(t, 10*time.Second, "master status shows the agent missing", func() bool {
		st, _ := x.statusWithHealth(t)
		for _, c := range st.Children {
			if c.Role == "agent" {
				row = c
			}
		}
		return row.State == "missing" && st.Master.State == "degraded" && st.Health == "degraded: the agent is missing"
	})
	if row.ID != "" {
		t.Errorf("the missing agent's row has id %q (the killed one was %s), want none", row.ID, agentID)
	}
	text := x.masterCLI(t, "status")
	t.Logf("master status without the agent:\n%s", text)
	if !strings.Contains(text, "health: degraded: the agent is missing") || !strings.Contains(text, "missing") {
		t.Errorf("master status does not say the agent is missing:\n%s", text)
	}

	// The master is alive (a restart of it mends nothing: its container's
	// check stays healthy) and says the service is degraded; not ready.
	if code, out := healthcheck(t, "master", x.socket("master"), false); code != 0 || !strings.Contains(out, "degraded: the agent is missing") {
		t.Errorf("master healthcheck without the agent = %d %q, want 0 saying degraded: the agent is missing", code, out)
	}
	if code, out := healthcheck(t, "master", x.socket("master"), true); code != 1 || !strings.Contains(out, "the agent is not ready") {
		t.Errorf("master healthcheck --ready without the agent = %d %q, want 1", code, out)
	}
	// The worker still serves its cache: it stays ready.
	if code, out := healthcheck(t, "worker", x.socket("worker-1"), true); code != 0 {
		t.Errorf("worker %s healthcheck --ready without the agent = %d %q, want 0", workerID, code, out)
	}
	// The status page's view says the same.
	resp, err := http.Get(admin + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	var view struct {
		Health   string
		Children []extMember
	}
	err = json.NewDecoder(resp.Body).Decode(&view)
	resp.Body.Close()
	if err != nil || view.Health != "degraded: the agent is missing" || len(view.Children) == 0 || view.Children[0].State != "missing" {
		t.Errorf("GET /api/status without the agent: health %q, children %+v (%v); want degraded, the agent missing first", view.Health, view.Children, err)
	}

	// docker start: an agent again, and all is well.
	x.startMember(t, "agent", "agent-2")
	eventually(t, 10*time.Second, "health ok with a new agent", func() bool {
		st, _ := x.statusWithHealth(t)
		return st.Health == "ok" && st.Master.State == "ready"
	})
	if code, out := healthcheck(t, "master", x.socket("master"), false); code != 0 || strings.TrimSpace(out) != "ok" {
		t.Errorf("master healthcheck with an agent again = %d %q, want 0 ok", code, out)
	}
}

type extHealthStatus struct {
	Master   extMember
	Children []extMember
	Health   string
}

// statusWithHealth runs `master status --json`.
func (x *external) statusWithHealth(t *testing.T) (extHealthStatus, error) {
	t.Helper()
	var st extHealthStatus
	err := json.Unmarshal([]byte(x.masterCLI(t, "status", "--json")), &st)
	return st, err
}

// masterCLI runs `master args...` in the project's environment and returns its output.
func (x *external) masterCLI(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "master"), args...)
	cmd.Env = x.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("master %v: %v\n%s", args, err, out)
	}
	return string(out)
}
