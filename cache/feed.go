package cache

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// WatchFeed follows the remote source's change feed (a subject on the source's own
// NATS broker at url) and calls changed with each announced version until ctx is
// done. On the first connect it calls changed(""): events before it are unknown.
// It keeps reconnecting for ever, and calls resync after each reconnect: events
// published while it was away are lost. A malformed event is logged and dropped.
func WatchFeed(ctx context.Context, url, subject string, log *slog.Logger, changed func(version string), resync func()) error {
	nc, err := nats.Connect(url,
		nats.Name("yolk-agent-feed"),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ConnectHandler(func(*nats.Conn) {
			log.Info("change feed connected", "url", url, "subject", subject)
			changed("")
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil || ctx.Err() != nil {
				return // our own Close
			}
			log.Warn("change feed disconnected; pull and force keep the cache fresh meanwhile", "url", url, "err", err)
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			log.Info("change feed reconnected", "url", url)
			resync()
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Error("change feed", "err", err)
		}),
	)
	if err != nil {
		return fmt.Errorf("cache: change feed %s: %w", url, err)
	}
	defer nc.Close()
	_, err = nc.Subscribe(subject, func(m *nats.Msg) {
		version, err := parseChange(m.Data)
		if err != nil {
			log.Warn("change feed: malformed event dropped", "subject", m.Subject, "bytes", len(m.Data), "err", err)
			return
		}
		changed(version)
	})
	if err != nil {
		return fmt.Errorf("cache: change feed subscribe %s: %w", subject, err)
	}
	<-ctx.Done()
	return nil
}

// parseChange returns the version a change event {"version":"..."} announces.
func parseChange(data []byte) (string, error) {
	var ev struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(data, &ev); err != nil {
		return "", err
	}
	if err := checkVersion(ev.Version); err != nil {
		return "", err
	}
	return ev.Version, nil
}
