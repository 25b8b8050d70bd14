package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestBadConfigExitsWithUsage(t *testing.T) {
	tests := []struct {
		bin, env, want string
	}{
		{"master", "YOLK_WORKERS=abc", "YOLK_WORKERS"},
		{"master", "YOLK_WORKERS=-3", "YOLK_WORKERS"},
		{"master", "YOLK_SHUTDOWN_TIMEOUT=soon", "YOLK_SHUTDOWN_TIMEOUT"},
		{"master", "YOLK_MODE=cluster", "YOLK_MODE"},
		{"master", "YOLK_BUS_URL=nats://10.0.0.1:4222", "YOLK_BUS_URL"},
		{"master", "YOLK_LOG_LEVEL=loud", "YOLK_LOG_LEVEL"},
		{"worker", "YOLK_READY_TIMEOUT=1parsec", "YOLK_READY_TIMEOUT"},
		{"agent", "YOLK_LOG_FORMAT=xml", "YOLK_LOG_FORMAT"},
	}
	for _, tt := range tests {
		t.Run(tt.bin+" "+tt.env, func(t *testing.T) {
			cmd := exec.Command(filepath.Join(binDir, tt.bin))
			cmd.Env = []string{tt.env, "YOLK_RUN_DIR=" + t.TempDir()}
			out, err := cmd.CombinedOutput()
			code := cmd.ProcessState.ExitCode()
			if code != 2 {
				t.Errorf("%s with %s: exit %d (%v), want 2\n%s", tt.bin, tt.env, code, err, out)
			}
			value := strings.SplitN(tt.env, "=", 2)[1]
			if !strings.Contains(string(out), tt.want) || !strings.Contains(string(out), value) {
				t.Errorf("%s with %s: error %q does not name the variable and its value", tt.bin, tt.env, out)
			}
		})
	}
}

func TestHelpListsVariables(t *testing.T) {
	for _, bin := range []string{"master", "agent", "worker"} {
		out, err := exec.Command(filepath.Join(binDir, bin), "--help").CombinedOutput()
		if err != nil {
			t.Errorf("%s --help: %v", bin, err)
		}
		for _, v := range []string{"YOLK_LOG_LEVEL", "YOLK_READY_TIMEOUT"} {
			if !strings.Contains(string(out), v) {
				t.Errorf("%s --help does not list %s:\n%s", bin, v, out)
			}
		}
	}
}

func TestStatusWithoutMaster(t *testing.T) {
	cmd := exec.Command(filepath.Join(binDir, "master"), "status")
	cmd.Env = []string{"YOLK_RUN_DIR=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no master is running") {
		t.Errorf("master status without a master = %v %q, want an error saying no master is running", err, out)
	}
}
