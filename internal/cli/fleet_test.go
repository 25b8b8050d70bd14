package cli

import (
	"strings"
	"testing"
	"time"
)

func TestFleetCheck(t *testing.T) {
	ok := Fleet{ClusterURL: "nats://a:4260, tls://b:4261", Host: "h0", Domain: "fleet", LeaseTTL: 3 * time.Second}
	if err := ok.Check(); err != nil {
		t.Fatalf("%+v: %v", ok, err)
	}
	if urls, _ := ok.URLs(); len(urls) != 2 || urls[1].Scheme != "tls" {
		t.Errorf("URLs = %v", urls)
	}
	if err := (&Fleet{}).Check(); err != nil {
		t.Errorf("a single host: %v", err)
	}
	for _, tt := range []struct {
		name string
		edit func(*Fleet)
		want string // in the error
	}{
		{"no port", func(f *Fleet) { f.ClusterURL = "nats://a" }, "YOLK_CLUSTER_URL"},
		{"http", func(f *Fleet) { f.ClusterURL = "http://a:80" }, "YOLK_CLUSTER_URL"},
		{"only commas", func(f *Fleet) { f.ClusterURL = " , " }, "YOLK_CLUSTER_URL"},
		{"host with a dot", func(f *Fleet) { f.Host = "a.b" }, "YOLK_HOST"},
		{"host with @", func(f *Fleet) { f.Host = "a@b" }, "YOLK_HOST"},
		{"long host", func(f *Fleet) { f.Host = strings.Repeat("h", 33) }, "YOLK_HOST"},
		{"domain with a dot", func(f *Fleet) { f.Domain = "a.b" }, "YOLK_CLUSTER_DOMAIN"},
		{"empty domain", func(f *Fleet) { f.Domain = "" }, "YOLK_CLUSTER_DOMAIN"},
		{"short TTL", func(f *Fleet) { f.LeaseTTL = time.Millisecond }, "YOLK_LEASE_TTL"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := ok
			tt.edit(&f)
			err := f.Check()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check = %v, want an error naming %s", err, tt.want)
			}
		})
	}
	// A password in the URL never shows in the error.
	f := ok
	f.ClusterURL = "ftp://user:s3cret@a:1"
	if err := f.Check(); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Check = %v: want an error without the password", err)
	}
	// No YOLK_HOST: the machine's name, made a token.
	f = ok
	f.Host = ""
	if err := f.Check(); err != nil || f.Host == "" {
		t.Errorf("Check without a host: %v, host %q", err, f.Host)
	}
}

func TestHostName(t *testing.T) {
	for in, want := range map[string]string{
		"web-1.example.com": "web-1", "pod_0": "pod_0", "a b": "a-b", "": "host",
		strings.Repeat("x", 40): strings.Repeat("x", 32), "ünï": "--n--",
	} {
		if got := HostName(in); got != want {
			t.Errorf("HostName(%q) = %q, want %q", in, got, want)
		}
	}
}
