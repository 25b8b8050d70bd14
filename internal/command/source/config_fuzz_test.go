package source

import (
	"testing"

	"github.com/yolkgo/yolk/internal/cli"
	"github.com/yolkgo/yolk/internal/cli/clitest"
)

// FuzzConfig sets one variable the source reads to any value: the config
// check never panics, and refuses a value only with a usage error (exit 2)
// that names a variable and never shows a secret. .ci/fuzz runs it for a
// bounded time; internal/e2e's TestBadEnvironment runs the real binary.
func FuzzConfig(f *testing.F) {
	clitest.FuzzConfig(f, clitest.ConfigFuzz{
		Vars:    []string{"SOURCE_ADDR", "SOURCE_NATS_ADDR", "SOURCE_SUBJECT", "SOURCE_CHANGE_EVERY", "SOURCE_KEYS", "YOLK_LOG_LEVEL", "YOLK_LOG_FORMAT"},
		Secrets: map[string]bool{},
		Seeds:   []string{"", "-1", "0", "1e999", "99999999999999999999", "abc", "a\tb\x01", "a\nb", "../../etc", "ünï ✓", "10s", "127.0.0.1:0", "off", "source.changed"},
		Base:    []string{},
		Other:   []string{"SOURCE_NATS_ADDR=off"},
		Check:   checkConfig,
	})
}

// checkConfig is what the command checks of its environment before it starts.
func checkConfig(environ []string) error {
	cfg, err := cli.Parse[config](environ)
	if err != nil {
		return err
	}
	return cfg.validate()
}
