package source

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"
)

// runChanger changes a random key of k0..k<keys-1> at random intervals of 0.5 to
// 1.5 times every, as egg's example mock subscriber does, until ctx is cancelled.
// With keys < 1 it changes k0.
func runChanger(ctx context.Context, st *store, every time.Duration, keys int, log *slog.Logger) {
	keys = max(keys, 1)
	t := time.NewTimer(nextChange(every))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			i := rand.IntN(keys)
			value := fmt.Appendf(nil, `{"name":"item %d","n":%d,"changedAt":%q}`, i, rand.IntN(1_000_000), now.UTC().Format(time.RFC3339Nano))
			if _, err := st.Put("k"+strconv.Itoa(i), value, "timer"); err != nil {
				log.Error("timed change", "err", err)
			}
			t.Reset(nextChange(every))
		}
	}
}

// nextChange is a random wait in [every/2, every*3/2).
func nextChange(every time.Duration) time.Duration {
	return every/2 + rand.N(every)
}
