// Package clitest holds what the commands' tests share about configuration.
package clitest

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/yolkgo/yolk/internal/cli"
)

// ConfigFuzz describes a command's environment for [FuzzConfig].
type ConfigFuzz struct {
	Vars    []string        // every variable the command reads
	Secrets map[string]bool // those that hold a secret
	Seeds   []string        // values tried for every variable at first
	Base    []string        // an environment the command accepts
	Other   []string        // another one (external mode; the source without its broker), or nil
	// Check is what the command checks of its environment before it starts.
	Check func(environ []string) error
}

var namesVariable = regexp.MustCompile(`\b(YOLK|SOURCE)_[A-Z_]+\b`)

// FuzzConfig sets one of c.Vars to any value on top of c.Base (or
// c.Other): Check never panics, and refuses a value only with a usage
// error (exit 2) that names a variable and never shows a secret.
func FuzzConfig(f *testing.F, c ConfigFuzz) {
	for i := range c.Vars {
		for _, v := range c.Seeds {
			f.Add(uint8(i), v, false)
		}
	}
	if c.Other != nil {
		f.Add(uint8(0), "other", true)
	}
	f.Fuzz(func(t *testing.T, i uint8, value string, other bool) {
		name := c.Vars[int(i)%len(c.Vars)]
		env := c.Base
		if other && c.Other != nil {
			env = c.Other
		}
		err := c.Check(append(env[:len(env):len(env)], name+"="+value))
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
		if c.Secrets[uerr.Var] || (c.Secrets[name] && len(value) >= 16 && strings.Contains(err.Error(), value)) {
			t.Fatalf("%s=%q: %q shows a secret", name, value, err)
		}
	})
}
