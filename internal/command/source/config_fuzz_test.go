package source

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/yolkgo/yolk/internal/cli"
)

// FuzzConfig sets one variable the source reads to any value: the config
// check never panics, and refuses a value only with a usage error (exit 2)
// that names a variable and never shows a secret. .ci/fuzz runs it for a
// bounded time; internal/e2e's TestBadEnvironment runs the real binary.
func FuzzConfig(f *testing.F) {
	vars := []string{"SOURCE_ADDR", "SOURCE_NATS_ADDR", "SOURCE_SUBJECT", "SOURCE_CHANGE_EVERY", "SOURCE_KEYS", "YOLK_LOG_LEVEL", "YOLK_LOG_FORMAT"}
	secret := map[string]bool{}
	for i := range vars {
		for _, v := range []string{"", "-1", "0", "1e999", "99999999999999999999", "abc", "a\tb\x01", "a\nb", "../../etc", "ünï ✓", "10s", "127.0.0.1:0", "off", "source.changed"} {
			f.Add(uint8(i), v, false)
		}
	}
	f.Add(uint8(0), "external", true)
	f.Fuzz(func(t *testing.T, i uint8, value string, external bool) {
		name := vars[int(i)%len(vars)]
		env := []string{}
		if external {
			env = []string{"SOURCE_NATS_ADDR=off"}
		}
		err := checkConfig(append(env, name+"="+value))
		if err == nil {
			return
		}
		var uerr *cli.UsageError
		if !errors.As(err, &uerr) {
			t.Fatalf("%s=%q: %v, want a usage error", name, value, err)
		}
		if !namesVariable.MatchString(err.Error()) {
			t.Fatalf("%s=%q: %q names no variable", name, value, err)
		}
		if secret[uerr.Var] || (secret[name] && len(value) >= 16 && strings.Contains(err.Error(), value)) {
			t.Fatalf("%s=%q: %q shows a secret", name, value, err)
		}
	})
}

var namesVariable = regexp.MustCompile(`\b(YOLK|SOURCE)_[A-Z_]+\b`)

// checkConfig is what the command checks of its environment before it starts.
func checkConfig(environ []string) error {
	cfg, err := cli.Parse[config](environ)
	if err != nil {
		return err
	}
	return cfg.validate()
}
