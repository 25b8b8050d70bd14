package supervisor

import (
	"math/rand/v2"
	"time"
)

// backoff computes the waits between restarts of one slot: none for a child
// that was ready for stable, else min, doubling up to max, with a random 0 to
// 20% taken off each wait; a child that stayed up for reset starts over at
// min. It also counts quick exits in a row (a crash loop).
type backoff struct {
	min, max, reset, stable time.Duration
	rnd                     func(n int64) int64 // [0, n); nil means math/rand/v2

	delay time.Duration // the last delay, 0 before the first exit and after a stable run
	exits int           // quick exits in a row
}

// exited records an exit at now of a child started at started and ready at
// ready (zero if it never was). It returns how long to wait before the
// restart and how many quick exits in a row there have been, this one
// included. A child that was ready for stable is not a quick exit: the wait
// is 0, the count 0, and the next quick exit waits min.
func (b *backoff) exited(started, ready, now time.Time) (wait time.Duration, exits int) {
	if !ready.IsZero() && now.Sub(ready) >= b.stable {
		b.delay, b.exits = 0, 0
		return 0, 0
	}
	if now.Sub(started) >= b.reset {
		b.delay, b.exits = 0, 0
	}
	b.delay = nextDelay(b.delay, b.min, b.max)
	b.exits++
	rnd := b.rnd
	if rnd == nil {
		rnd = rand.Int64N
	}
	return jitter(b.delay, rnd), b.exits
}

// nextDelay returns min after 0, else twice prev, at most max.
func nextDelay(prev, min, max time.Duration) time.Duration {
	if prev <= 0 {
		return min
	}
	if prev >= max/2 {
		return max
	}
	return 2 * prev
}

// jitter returns d minus a random 0 to 20% of d: a wait in [0.8d, d].
func jitter(d time.Duration, rnd func(n int64) int64) time.Duration {
	if d <= 0 {
		return 0
	}
	return d - time.Duration(rnd(int64(d)/5+1))
}

// sleep waits d, or less when stop is closed; it reports whether d elapsed.
func sleep(stop <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	}
}
