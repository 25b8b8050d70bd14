package source

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/internal/cli"
)

// healthcheckTimeout bounds `source healthcheck`; the container runtime's own
// probe timeout is usually shorter and wins.
const healthcheckTimeout = 5 * time.Second

// validate checks what the types alone do not.
func (c *config) validate() error {
	if err := cli.CheckHostPort(c.Addr); err != nil {
		return cli.BadValue("SOURCE_ADDR", c.Addr, "%v", err)
	}
	if c.NATSAddr != "off" {
		if err := cli.CheckHostPort(c.NATSAddr); err != nil {
			return cli.BadValue("SOURCE_NATS_ADDR", c.NATSAddr, "%v (or off)", err)
		}
	}
	if !bus.ValidSubject(c.Subject) {
		return cli.BadValue("SOURCE_SUBJECT", c.Subject, "want a NATS subject of dot-separated tokens, without spaces or wildcards")
	}
	if c.ChangeEvery != 0 && c.ChangeEvery < time.Millisecond {
		return cli.BadValue("SOURCE_CHANGE_EVERY", c.ChangeEvery.String(), "want 0 (off) or at least 1ms")
	}
	if c.Keys < 0 || c.Keys > 1_000_000 {
		return cli.BadValue("SOURCE_KEYS", strconv.Itoa(c.Keys), "want 0 to 1000000")
	}
	return nil
}

// healthcheck asks the source on addr for GET /healthz. A listener on all
// interfaces (empty or unspecified host) is reached on loopback.
func healthcheck(ctx context.Context, addr string, stdout io.Writer) error {
	host, port, _ := net.SplitHostPort(addr) // validated
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	ctx, cancel := context.WithTimeout(ctx, healthcheckTimeout)
	defer cancel()
	url := "http://" + net.JoinHostPort(host, port) + "/healthz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: GET %s: %s", url, resp.Status)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
