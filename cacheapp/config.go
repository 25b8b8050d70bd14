package cacheapp

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/yolkgo/yolk"
	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/cache"
)

// Config is the cache application's configuration, read from the environment
// by every process of the service.
type Config struct {
	SourceURL     string        `env:"YOLK_SOURCE_URL" envDefault:"http://127.0.0.1:7002" help:"the remote data source (GET /data with ETags)"`
	PushURL       string        `env:"YOLK_PUSH_URL" envDefault:"nats://127.0.0.1:4223" help:"the source's change feed broker; off turns push off"`
	PushSubject   string        `env:"YOLK_PUSH_SUBJECT" envDefault:"source.changed" help:"the change feed's subject"`
	ForceInterval time.Duration `env:"YOLK_FORCE_INTERVAL" envDefault:"10m" help:"force_refresh in every worker; 0 turns it off"`
	PullInterval  time.Duration `env:"YOLK_PULL_INTERVAL" envDefault:"10s" help:"pull_refresh check in one worker; 0 turns it off"`
	FetchTimeout  time.Duration `env:"YOLK_FETCH_TIMEOUT" envDefault:"5s" help:"deadline of one request to the remote source"`
	MaxBytes      yolk.ByteSize `env:"YOLK_SOURCE_MAX_BYTES" envDefault:"32MiB" help:"the largest data set the source may send (1KiB to 1GiB; KiB, MiB, GiB or a byte count); a larger one is refused and the last good data keeps serving"`
}

// Validate checks what the types alone do not. Its errors name the variable
// and its value.
func (c *Config) Validate() error {
	bad := func(name, value, why string) error { return fmt.Errorf("%s=%q: %s", name, value, why) }
	u, err := url.Parse(c.SourceURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return bad("YOLK_SOURCE_URL", c.SourceURL, "want http://host:port")
	}
	if c.pushOn() {
		u, err := url.Parse(c.PushURL)
		if err != nil || u.Scheme != "nats" || u.Host == "" {
			return bad("YOLK_PUSH_URL", c.PushURL, "want nats://host:port or off")
		}
		if !bus.ValidSubject(c.PushSubject) {
			return bad("YOLK_PUSH_SUBJECT", c.PushSubject, "want a NATS subject of dot-separated tokens, without spaces or wildcards")
		}
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"YOLK_FORCE_INTERVAL", c.ForceInterval}, {"YOLK_PULL_INTERVAL", c.PullInterval}} {
		if d.d < 0 || (d.d > 0 && d.d < 10*time.Millisecond) {
			return bad(d.name, d.d.String(), "want 0 (off) or at least 10ms")
		}
	}
	if c.FetchTimeout <= 0 {
		return bad("YOLK_FETCH_TIMEOUT", c.FetchTimeout.String(), "must be positive")
	}
	if c.MaxBytes < 1<<10 || c.MaxBytes > 1<<30 {
		return bad("YOLK_SOURCE_MAX_BYTES", strconv.FormatInt(int64(c.MaxBytes), 10), "want 1KiB to 1GiB")
	}
	return nil
}

func (c *Config) pushOn() bool { return !strings.EqualFold(c.PushURL, "off") }

// source is the remote source c names.
func (c *Config) source() *cache.HTTPSource {
	return &cache.HTTPSource{URL: strings.TrimSuffix(c.SourceURL, "/") + "/data", Timeout: c.FetchTimeout, MaxBytes: int64(c.MaxBytes)}
}
