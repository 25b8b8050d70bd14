package cacheapp

import (
	"errors"
	"regexp"
	"testing"

	"github.com/caarlos0/env/v11"
)

var namesVariable = regexp.MustCompile(`\bYOLK_[A-Z_]+\b`)

// FuzzConfig sets one variable of the cache application to any value: parsing
// and Validate never panic, and an error names a variable. .ci/fuzz runs it
// for a bounded time; internal/e2e's TestBadEnvironment runs the binaries.
func FuzzConfig(f *testing.F) {
	vars := []string{"YOLK_SOURCE_URL", "YOLK_PUSH_URL", "YOLK_PUSH_SUBJECT", "YOLK_FORCE_INTERVAL", "YOLK_PULL_INTERVAL", "YOLK_FETCH_TIMEOUT", "YOLK_SOURCE_MAX_BYTES"}
	for i := range vars {
		for _, v := range []string{"", "-1", "0", "1e999", "abc", "a\tb\x01", "a\nb", "off", "10s", "http://127.0.0.1:7002", "nats://127.0.0.1:4223", "a.b.*"} {
			f.Add(uint8(i), v)
		}
	}
	f.Fuzz(func(t *testing.T, i uint8, value string) {
		name := vars[int(i)%len(vars)]
		var c Config
		err := env.ParseWithOptions(&c, env.Options{Environment: map[string]string{name: value}})
		if err != nil {
			var agg env.AggregateError
			if !errors.As(err, &agg) {
				t.Fatalf("%s=%q: %v, want a parse error", name, value, err)
			}
			return
		}
		if err := c.Validate(); err != nil && !namesVariable.MatchString(err.Error()) {
			t.Fatalf("%s=%q: %q names no variable", name, value, err)
		}
	})
}
