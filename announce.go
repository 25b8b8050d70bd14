package yolk

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// announceRetry is the pause between two failed announcements.
const announceRetry = time.Second

// announce tells someone, with send, that this process is ready, and tells
// them again each time a value arrives on again (after a reconnect to a master
// that was restarted and knows nobody), until ctx is done. Each send is bounded
// by timeout; a failed one is logged and retried until it succeeds, and then
// done is called. It returns nil when ctx is done, and the error of a send
// that the master refused (errRefused): retrying would not change its mind.
func announce(ctx context.Context, send func(context.Context) error, again <-chan struct{}, timeout time.Duration, log *slog.Logger, done func()) error {
	for {
		for {
			sctx, cancel := context.WithTimeout(ctx, timeout)
			err := send(sctx)
			cancel()
			if err == nil {
				break
			}
			if errors.Is(err, errRefused) {
				return err
			}
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("report ready to the master; retrying", "err", err, "retryIn", announceRetry.String())
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(announceRetry):
			}
		}
		done()
		select {
		case <-ctx.Done():
			return nil
		case <-again:
		}
	}
}
