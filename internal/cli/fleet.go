package cli

import (
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/yolkgo/yolk/bus"
)

// Fleet is the part of every process's config that joins its host to a fleet
// (a NATS cluster that the master's bus joins as a leaf node). The master
// passes it on to the processes it starts.
type Fleet struct {
	ClusterURL string        `env:"YOLK_CLUSTER_URL" help:"comma-separated URLs of a NATS cluster's leaf node listeners (nats:// or tls://): this host joins that fleet; empty: a single host"`
	Host       string        `env:"YOLK_HOST" helpDefault:"the hostname" help:"this host's name in the fleet, unique in it (letters, digits, '-' and '_', at most 32)"`
	Domain     string        `env:"YOLK_CLUSTER_DOMAIN" envDefault:"fleet" help:"the cluster's JetStream domain (its servers' jetstream { domain })"`
	LeaseTTL   time.Duration `env:"YOLK_LEASE_TTL" envDefault:"3s" help:"how long a lease (a cluster schedule's, the cache's) outlives its holder: the longest takeover"`
}

// maxHost is the longest host name: it and a process id make one subject token.
const maxHost = 32

// On reports whether the host is in a fleet.
func (f Fleet) On() bool { return f.ClusterURL != "" }

// Check validates the fleet's settings, and names the host after the machine
// when YOLK_HOST is unset.
func (f *Fleet) Check() error {
	if !f.On() {
		return nil
	}
	if _, err := f.URLs(); err != nil {
		return err
	}
	if f.Host == "" {
		name, err := os.Hostname()
		if err != nil {
			return Unset("YOLK_HOST", "the hostname is unknown: "+err.Error())
		}
		f.Host = HostName(name)
	}
	if len(f.Host) > maxHost || bus.ValidID(f.Host) != nil || strings.ContainsAny(f.Host, "@") {
		return BadValue("YOLK_HOST", f.Host, "want 1 to %d letters, digits, '-' and '_'", maxHost)
	}
	for _, c := range f.Host {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return BadValue("YOLK_HOST", f.Host, "want 1 to %d letters, digits, '-' and '_'", maxHost)
		}
	}
	if f.Domain == "" || strings.ContainsAny(f.Domain, ".*> \t") {
		return BadValue("YOLK_CLUSTER_DOMAIN", f.Domain, "want one word")
	}
	if f.LeaseTTL < 300*time.Millisecond || f.LeaseTTL > 10*time.Minute {
		return BadValue("YOLK_LEASE_TTL", f.LeaseTTL.String(), "want 300ms to 10m")
	}
	return nil
}

// URLs parses YOLK_CLUSTER_URL.
func (f Fleet) URLs() ([]*url.URL, error) {
	var out []*url.URL
	for part := range strings.SplitSeq(f.ClusterURL, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		u, err := url.Parse(part)
		if err != nil || u.Host == "" || u.Port() == "" {
			return nil, BadValue("YOLK_CLUSTER_URL", redactURL(part), "want nats://HOST:PORT or tls://HOST:PORT, comma-separated")
		}
		switch u.Scheme {
		case "nats", "tls", "nats-leaf":
		default:
			return nil, BadValue("YOLK_CLUSTER_URL", u.Redacted(), "want nats:// or tls://")
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, BadValue("YOLK_CLUSTER_URL", f.ClusterURL, "no URL in it")
	}
	return out, nil
}

func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		return "…" + s[i:]
	}
	return s
}

// HostName makes a host name of a machine's: its first label, with any
// character but letters, digits, '-' and '_' made '-', at most 32 bytes.
func HostName(machine string) string {
	name, _, _ := strings.Cut(machine, ".")
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '-'
		}
	}
	if len(b) > maxHost {
		b = b[:maxHost]
	}
	if len(b) == 0 {
		return "host"
	}
	return string(b)
}
