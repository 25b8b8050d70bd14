package cli

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/yolkgo/yolk/bus"
)

func TestJoin(t *testing.T) {
	const secret = "the-role-secret-4f1c"
	tests := []struct {
		name    string
		d       Deploy
		b       Bus
		secret  string
		wantVar string // in the error; "" for none
	}{
		{"fork", Deploy{Mode: ModeFork}, Bus{URL: "nats://127.0.0.1:4222", User: "u", Secret: "s"}, "", ""},
		{"fork without a user", Deploy{Mode: ModeFork}, Bus{URL: "nats://127.0.0.1:4222", Secret: "s"}, "", "YOLK_BUS_USER"},
		{"fork without a secret", Deploy{Mode: ModeFork}, Bus{URL: "nats://127.0.0.1:4222", User: "u"}, "", "YOLK_BUS_SECRET"},
		{"external", Deploy{Mode: ModeExternal}, Bus{URL: "nats://127.0.0.1:4222"}, secret, ""},
		{"external with its id", Deploy{Mode: ModeExternal}, Bus{URL: "nats://127.0.0.1:4222", ID: "worker-7"}, secret, ""},
		{"external with another role's id", Deploy{Mode: ModeExternal}, Bus{URL: "nats://127.0.0.1:4222", ID: "agent-7"}, secret, "YOLK_ID"},
		{"external with a pid for id", Deploy{Mode: ModeExternal}, Bus{URL: "nats://127.0.0.1:4222", ID: "1"}, secret, "YOLK_ID"},
		{"external without the secret", Deploy{Mode: ModeExternal}, Bus{URL: "nats://127.0.0.1:4222"}, "", "YOLK_WORKER_SECRET"},
		{"two URLs", Deploy{Mode: ModeFork}, Bus{URL: "nats://a:4222, tls://b", User: "u", Secret: "s"}, "", ""},
		{"no scheme", Deploy{Mode: ModeFork}, Bus{URL: "127.0.0.1:4222", User: "u", Secret: "s"}, "", "YOLK_BUS_URL"},
		{"another scheme", Deploy{Mode: ModeFork}, Bus{URL: "http://127.0.0.1:4222", User: "u", Secret: "s"}, "", "YOLK_BUS_URL"},
		{"no host", Deploy{Mode: ModeFork}, Bus{URL: "nats://:4222", User: "u", Secret: "s"}, "", "YOLK_BUS_URL"},
		{"port 0", Deploy{Mode: ModeFork}, Bus{URL: "nats://h:0", User: "u", Secret: "s"}, "", "YOLK_BUS_URL"},
		{"port out of range", Deploy{Mode: ModeFork}, Bus{URL: "nats://h:65536", User: "u", Secret: "s"}, "", "YOLK_BUS_URL"},
		{"a path", Deploy{Mode: ModeFork}, Bus{URL: "nats://h:4222/x", User: "u", Secret: "s"}, "", "YOLK_BUS_URL"},
		{"a newline", Deploy{Mode: ModeFork}, Bus{URL: "nats://h\n:4222", User: "u", Secret: "s"}, "", "YOLK_BUS_URL"},
		{"a space around, as nats.go allows", Deploy{Mode: ModeFork}, Bus{URL: " nats://h:4222 ", User: "u", Secret: "s"}, "", ""},
	}
	for _, tt := range tests {
		b := tt.b
		err := tt.d.Join(&b, bus.RoleWorker, "YOLK_WORKER_SECRET", tt.secret, time.Second)
		if tt.wantVar == "" {
			if err != nil {
				t.Errorf("Join(%s) = %v, want nil", tt.name, err)
			}
			continue
		}
		if _, ok := errors.AsType[*UsageError](err); !ok || !strings.Contains(fmtErr(err), tt.wantVar) {
			t.Errorf("Join(%s) = %v, want a usage error naming %s", tt.name, err, tt.wantVar)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("Join(%s) = %q shows the secret", tt.name, err)
		}
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestBusURLErrorHidesPassword(t *testing.T) {
	b := Bus{URL: "http://user:pa55w0rd@127.0.0.1:4222", User: "u", Secret: "s"}
	err := Deploy{Mode: ModeFork}.Join(&b, bus.RoleAgent, "YOLK_AGENT_SECRET", "", time.Second)
	if err == nil || strings.Contains(err.Error(), "pa55w0rd") {
		t.Errorf("Join with a bad URL with a password = %v, want an error that hides it", err)
	}
}

func TestCheckHostPort(t *testing.T) {
	for addr, ok := range map[string]bool{
		":7001": true, "127.0.0.1:0": true, "[::1]:65535": true, "host:80": true,
		"": false, "7001": false, "host": false, "host:http": false, "host:65536": false, "host:-1": false, "host:07": false,
	} {
		if err := CheckHostPort(addr); (err == nil) != ok {
			t.Errorf("CheckHostPort(%q) = %v, want ok %v", addr, err, ok)
		}
	}
}
