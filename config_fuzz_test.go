package yolk

import (
	"testing"

	"github.com/yolkgo/yolk/internal/cli/clitest"
)

// The agent's and the workers' config checks never panic, and refuse a value
// only with a usage error (exit 2) that names a variable and never shows a
// secret. .ci/fuzz runs them for a bounded time; internal/e2e's
// TestBadEnvironment runs the real binaries.
var (
	childVars  = []string{"YOLK_MODE", "YOLK_HEALTH_SOCKET", "YOLK_BUS_URL", "YOLK_BUS_USER", "YOLK_BUS_SECRET", "YOLK_ID", "YOLK_READY_TIMEOUT", "YOLK_SHUTDOWN_TIMEOUT", "YOLK_LOG_LEVEL", "YOLK_LOG_FORMAT"}
	childSeeds = []string{"", "-1", "0", "1e999", "99999999999999999999", "abc", "a\tb\x01", "a\nb", "../../etc", "ünï ✓", "10s", ":7001", "nats://127.0.0.1:4222", "worker-1", "agent-1"}
)

func FuzzAgentConfig(f *testing.F) {
	clitest.FuzzConfig(f, clitest.ConfigFuzz{
		Vars:    append(childVars, "YOLK_AGENT_SECRET"),
		Secrets: map[string]bool{"YOLK_BUS_SECRET": true, "YOLK_AGENT_SECRET": true},
		Seeds:   childSeeds,
		Base:    []string{"YOLK_BUS_USER=u", "YOLK_BUS_SECRET=s"},
		Other:   []string{"YOLK_MODE=external", "YOLK_AGENT_SECRET=s", "YOLK_ID=agent-1", "YOLK_HEALTH_SOCKET=off"},
		Check: func(environ []string) error {
			_, err := parseChild(RoleAgent, environ)
			return err
		},
	})
}

func FuzzWorkerConfig(f *testing.F) {
	clitest.FuzzConfig(f, clitest.ConfigFuzz{
		Vars:    append(childVars, "YOLK_WORKER_SECRET", "YOLK_HTTP_ADDR", "YOLK_LISTEN_FD"),
		Secrets: map[string]bool{"YOLK_BUS_SECRET": true, "YOLK_WORKER_SECRET": true},
		Seeds:   childSeeds,
		Base:    []string{"YOLK_BUS_USER=u", "YOLK_BUS_SECRET=s"},
		Other:   []string{"YOLK_MODE=external", "YOLK_WORKER_SECRET=s", "YOLK_ID=worker-1", "YOLK_HEALTH_SOCKET=off"},
		Check: func(environ []string) error {
			_, err := parseChild(RoleWorker, environ)
			return err
		},
	})
}
