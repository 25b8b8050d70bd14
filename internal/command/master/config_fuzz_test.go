package master

import (
	"testing"

	"github.com/yolkgo/yolk/internal/cli"
	"github.com/yolkgo/yolk/internal/cli/clitest"
)

// FuzzConfig sets one variable the master reads (in fork or external mode) to any value: the config
// check never panics, and refuses a value only with a usage error (exit 2)
// that names a variable and never shows a secret. .ci/fuzz runs it for a
// bounded time; internal/e2e's TestBadEnvironment runs the real binary.
func FuzzConfig(f *testing.F) {
	clitest.FuzzConfig(f, clitest.ConfigFuzz{
		Vars:    []string{"YOLK_MODE", "YOLK_HEALTH_SOCKET", "YOLK_WORKERS", "YOLK_HTTP_ADDR", "YOLK_BUS_URL", "YOLK_AGENT_SECRET", "YOLK_WORKER_SECRET", "YOLK_RUN_DIR", "YOLK_SHUTDOWN_TIMEOUT", "YOLK_READY_TIMEOUT", "YOLK_AGENT_BIN", "YOLK_WORKER_BIN", "YOLK_LOG_LEVEL", "YOLK_LOG_FORMAT"},
		Secrets: map[string]bool{"YOLK_AGENT_SECRET": true, "YOLK_WORKER_SECRET": true},
		Seeds:   []string{"", "-1", "0", "1e999", "99999999999999999999", "abc", "a\tb\x01", "a\nb", "../../etc", "ünï ✓", "10s", ":7001", "nats://127.0.0.1:4222", "/bin/sh"},
		Base:    []string{"YOLK_RUN_DIR=run", "YOLK_AGENT_BIN=/bin/sh", "YOLK_WORKER_BIN=/bin/sh"},
		Other:   []string{"YOLK_MODE=external", "YOLK_RUN_DIR=run", "YOLK_AGENT_SECRET=a", "YOLK_WORKER_SECRET=w", "YOLK_HEALTH_SOCKET=off"},
		Check:   checkConfig,
	})
}

// checkConfig is what the command checks of its environment before it starts.
func checkConfig(environ []string) error {
	cfg, err := cli.Parse[config](environ)
	if err != nil {
		return err
	}
	if err := cfg.validate(false); err != nil {
		return err
	}
	if cfg.External() {
		return cfg.secrets()
	}
	return cfg.checkBins()
}
