package cli

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestHealthPath(t *testing.T) {
	tests := []struct {
		mode, socket, want string
	}{
		{ModeFork, "", ""},
		{ModeFork, "/run/h.sock", "/run/h.sock"},
		{ModeExternal, "", DefaultHealthSocket},
		{ModeExternal, "/run/h.sock", "/run/h.sock"},
		{ModeExternal, "off", ""},
	}
	for _, tt := range tests {
		d := Deploy{Mode: tt.mode, HealthSocket: tt.socket}
		if got := d.HealthPath(); got != tt.want {
			t.Errorf("Deploy{%s, %q}.HealthPath() = %q, want %q", tt.mode, tt.socket, got, tt.want)
		}
	}
}

func TestDeployValidate(t *testing.T) {
	tests := []struct {
		d       Deploy
		wantVar string // "" for valid
	}{
		{Deploy{Mode: ModeFork}, ""},
		{Deploy{Mode: ModeExternal, HealthSocket: "/tmp/x.sock"}, ""},
		{Deploy{Mode: "cluster"}, "YOLK_MODE"},
		{Deploy{Mode: ModeExternal, HealthSocket: "/" + strings.Repeat("x", 120)}, "YOLK_HEALTH_SOCKET"},
	}
	for _, tt := range tests {
		err := tt.d.Validate()
		var uerr *UsageError
		switch {
		case tt.wantVar == "" && err != nil:
			t.Errorf("%+v.Validate() = %v, want nil", tt.d, err)
		case tt.wantVar != "" && (!errors.As(err, &uerr) || uerr.Var != tt.wantVar):
			t.Errorf("%+v.Validate() = %v, want a usage error naming %s", tt.d, err, tt.wantVar)
		}
	}
}

func TestProcessID(t *testing.T) {
	ext := Deploy{Mode: ModeExternal}
	if got := ext.ProcessID("worker", "w7"); got != "w7" {
		t.Errorf("ProcessID(worker, w7) = %q, want w7", got)
	}
	a, b := ext.ProcessID("worker", ""), ext.ProcessID("worker", "")
	if !regexp.MustCompile(`^worker-[0-9a-f]{8}$`).MatchString(a) || a == b {
		t.Errorf("ProcessID(worker, \"\") in external mode = %q then %q, want distinct worker-<8 hex>", a, b)
	}
	if got := (Deploy{Mode: ModeFork}).ProcessID("agent", ""); got != strconv.Itoa(os.Getpid()) {
		t.Errorf("ProcessID(agent, \"\") in fork mode = %q, want the pid", got)
	}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// serveHealth binds a health socket in a fresh directory and serves it until the test ends.
func serveHealth(t *testing.T, ready func() error) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "h.sock")
	stop, err := Deploy{Mode: ModeExternal, HealthSocket: path}.StartHealth(ready, discard())
	if err != nil {
		t.Fatalf("StartHealth: %v", err)
	}
	t.Cleanup(stop)
	return path
}

func TestStartHealthOff(t *testing.T) {
	stop, err := Deploy{Mode: ModeFork}.StartHealth(func() error { return nil }, discard())
	if err != nil {
		t.Fatal(err)
	}
	stop()
}
