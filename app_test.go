package yolk

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/yolkgo/yolk/internal/cli"
)

func TestPickRole(t *testing.T) {
	tests := []struct {
		args, environ []string
		want          Role
		wantArgs      []string
		usage         bool
	}{
		{nil, nil, RoleMaster, nil, false},
		{[]string{"status"}, nil, RoleMaster, []string{"status"}, false},
		{[]string{"worker", "healthcheck"}, nil, RoleWorker, []string{"healthcheck"}, false},
		{[]string{"agent"}, []string{"YOLK_ROLE=worker"}, RoleAgent, []string{}, false},
		{nil, []string{"YOLK_ROLE=agent"}, RoleAgent, nil, false},
		{nil, []string{"YOLK_ROLE=agent", "YOLK_ROLE=worker"}, RoleWorker, nil, false},
		{nil, []string{"YOLK_ROLE="}, RoleMaster, nil, false},
		{nil, []string{"YOLK_ROLE=boss"}, "", nil, true},
	}
	for _, tt := range tests {
		role, args, err := pickRole(tt.args, tt.environ)
		var uerr *cli.UsageError
		if tt.usage {
			if !errors.As(err, &uerr) || uerr.Var != EnvRole {
				t.Errorf("pickRole(%q, %q) = %v, want a usage error naming %s", tt.args, tt.environ, err, EnvRole)
			}
			continue
		}
		if err != nil || role != tt.want || strings.Join(args, " ") != strings.Join(tt.wantArgs, " ") {
			t.Errorf("pickRole(%q, %q) = %q, %q, %v; want %q, %q", tt.args, tt.environ, role, args, err, tt.want, tt.wantArgs)
		}
	}
}

func TestParseAppConfig(t *testing.T) {
	type config struct {
		Every time.Duration `env:"APP_EVERY" envDefault:"1s"`
	}
	var c config
	if err := parseAppConfig(&c, []string{"APP_EVERY=2s"}); err != nil || c.Every != 2*time.Second {
		t.Errorf("parseAppConfig(APP_EVERY=2s) = %v, Every %v; want nil, 2s", err, c.Every)
	}
	err := parseAppConfig(&c, []string{"APP_EVERY=soon"})
	var uerr *cli.UsageError
	if !errors.As(err, &uerr) || uerr.Var != "APP_EVERY" {
		t.Errorf("parseAppConfig(APP_EVERY=soon) = %v, want a usage error naming APP_EVERY", err)
	}
	for _, bad := range []any{config{}, (*config)(nil), new(int)} {
		err := parseAppConfig(bad, nil)
		if err == nil || errors.As(err, &uerr) || !strings.Contains(err.Error(), "App.Config") {
			t.Errorf("parseAppConfig(%T) = %v, want an error (not a usage error) naming App.Config", bad, err)
		}
	}
}

func TestReportRefusesWhatStatusCannotShow(t *testing.T) {
	p := &Process{states: make(chan State, 1)}
	for _, s := range []State{{Version: ""}, {Version: "a b"}, {Version: "v\x1b[2J"}, {Version: strings.Repeat("9", 257)}, {Version: "1", By: "Push"}} {
		if err := p.Report(s); err == nil {
			t.Errorf("Report(%+v) = nil, want an error", s)
		}
	}
	if err := p.Report(State{Version: "7", By: "push"}); err != nil {
		t.Fatalf("Report(7, push) = %v", err)
	}
	if got := <-p.states; got.Version != "7" {
		t.Errorf("sent %+v, want version 7", got)
	}
}
