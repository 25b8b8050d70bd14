package agent

import (
	"testing"

	"github.com/yolkgo/yolk/internal/cli/clitest"
)

// FuzzConfig sets one variable the agent reads to any value: the config
// check never panics, and refuses a value only with a usage error (exit 2)
// that names a variable and never shows a secret. .ci/fuzz runs it for a
// bounded time; internal/e2e's TestBadEnvironment runs the real binary.
func FuzzConfig(f *testing.F) {
	clitest.FuzzConfig(f, clitest.ConfigFuzz{
		Vars:    []string{"YOLK_MODE", "YOLK_HEALTH_SOCKET", "YOLK_BUS_URL", "YOLK_BUS_USER", "YOLK_BUS_SECRET", "YOLK_ID", "YOLK_READY_TIMEOUT", "YOLK_AGENT_SECRET", "YOLK_SOURCE_URL", "YOLK_PUSH_URL", "YOLK_PUSH_SUBJECT", "YOLK_FORCE_INTERVAL", "YOLK_PULL_INTERVAL", "YOLK_FETCH_TIMEOUT", "YOLK_LOG_LEVEL", "YOLK_LOG_FORMAT"},
		Secrets: map[string]bool{"YOLK_BUS_SECRET": true, "YOLK_AGENT_SECRET": true},
		Seeds:   []string{"", "-1", "0", "1e999", "99999999999999999999", "abc", "a\tb\x01", "a\nb", "../../etc", "ünï ✓", "10s", "nats://127.0.0.1:4222", "agent-1"},
		Base:    []string{"YOLK_BUS_USER=u", "YOLK_BUS_SECRET=s"},
		Other:   []string{"YOLK_MODE=external", "YOLK_AGENT_SECRET=s", "YOLK_ID=agent-1", "YOLK_HEALTH_SOCKET=off"},
		Check:   checkConfig,
	})
}

// checkConfig is what the command checks of its environment before it starts.
func checkConfig(environ []string) error {
	_, err := parseConfig(environ)
	return err
}
