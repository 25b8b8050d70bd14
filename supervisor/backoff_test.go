package supervisor

import (
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"
)

func TestBackoffDelays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := backoff{min: 100 * time.Millisecond, max: 30 * time.Second, reset: time.Minute,
			rnd: func(int64) int64 { return 0 }}
		want := []time.Duration{
			100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
			1600 * time.Millisecond, 3200 * time.Millisecond, 6400 * time.Millisecond, 12800 * time.Millisecond,
			25600 * time.Millisecond, 30 * time.Second, 30 * time.Second,
		}
		for i, w := range want {
			started := time.Now()
			time.Sleep(time.Second) // the child ran for a second
			got, exits := b.exited(started, time.Time{}, time.Now())
			if got != w || exits != i+1 {
				t.Errorf("exit %d: exited() = %v, %d; want %v, %d", i+1, got, exits, w, i+1)
			}
			time.Sleep(got) // the backoff wait
		}
		started := time.Now()
		time.Sleep(time.Minute) // up for the reset time: start over
		if got, exits := b.exited(started, time.Time{}, time.Now()); got != 100*time.Millisecond || exits != 1 {
			t.Errorf("exited() after a minute up = %v, %d; want 100ms, 1", got, exits)
		}
		started = time.Now()
		time.Sleep(59 * time.Second) // not quite: keeps counting
		if got, exits := b.exited(started, time.Time{}, time.Now()); got != 200*time.Millisecond || exits != 2 {
			t.Errorf("exited() after 59s up = %v, %d; want 200ms, 2", got, exits)
		}
	})
}

func TestBackoffStable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := backoff{min: 100 * time.Millisecond, max: 30 * time.Second, reset: time.Minute, stable: time.Second,
			rnd: func(int64) int64 { return 0 }}
		// exit runs a child that is ready after up and exits after ready
		// more (ready < 0: never ready), and returns what exited returned.
		exit := func(up, ready time.Duration) (time.Duration, int) {
			started := time.Now()
			time.Sleep(up)
			var readyAt time.Time
			if ready >= 0 {
				readyAt = time.Now()
				time.Sleep(ready)
			}
			return b.exited(started, readyAt, time.Now())
		}
		steps := []struct {
			name      string
			up, ready time.Duration
			wait      time.Duration
			exits     int
		}{
			{"never ready", time.Second, -1, 100 * time.Millisecond, 1},
			{"never ready", time.Second, -1, 200 * time.Millisecond, 2},
			{"dies right after ready", time.Second, 999 * time.Millisecond, 400 * time.Millisecond, 3},
			{"ready for stable", time.Second, time.Second, 0, 0},
			{"ready for stable", 0, 10 * time.Second, 0, 0},
			{"never ready", 0, -1, 100 * time.Millisecond, 1},
			{"dies right after ready", 0, 0, 200 * time.Millisecond, 2},
			{"ready for stable", 0, time.Second, 0, 0},
		}
		for i, st := range steps {
			wait, exits := exit(st.up, st.ready)
			if wait != st.wait || exits != st.exits {
				t.Errorf("exit %d (%s) = %v, %d; want %v, %d", i+1, st.name, wait, exits, st.wait, st.exits)
			}
			time.Sleep(wait)
		}
	})
}

func TestJitter(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 5, 100 * time.Millisecond, 30 * time.Second} {
		lo := d - d/5
		for range 1000 {
			if got := jitter(d, rand.Int64N); got < lo || got > d {
				t.Fatalf("jitter(%v) = %v, want within [%v, %v]", d, got, lo, d)
			}
		}
	}
	if got := jitter(time.Second, func(n int64) int64 { return n - 1 }); got != 800*time.Millisecond {
		t.Errorf("jitter(1s) with the largest draw = %v, want 800ms", got)
	}
}

func TestNextDelay(t *testing.T) {
	tests := []struct{ prev, min, max, want time.Duration }{
		{0, time.Millisecond, time.Second, time.Millisecond},
		{-1, time.Millisecond, time.Second, time.Millisecond},
		{400 * time.Millisecond, time.Millisecond, time.Second, 800 * time.Millisecond},
		{600 * time.Millisecond, time.Millisecond, time.Second, time.Second},
		{time.Second, time.Millisecond, time.Second, time.Second},
		{1 << 62, time.Millisecond, 1<<63 - 1, 1<<63 - 1}, // no overflow
	}
	for _, tt := range tests {
		if got := nextDelay(tt.prev, tt.min, tt.max); got != tt.want {
			t.Errorf("nextDelay(%v, %v, %v) = %v, want %v", tt.prev, tt.min, tt.max, got, tt.want)
		}
	}
}

func TestSleep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stop := make(chan struct{})
		start := time.Now()
		if !sleep(stop, 5*time.Second) {
			t.Errorf("sleep(open, 5s) = false, want true")
		}
		if got := time.Since(start); got != 5*time.Second {
			t.Errorf("sleep(open, 5s) took %v, want 5s", got)
		}
		go func() {
			time.Sleep(time.Second)
			close(stop)
		}()
		start = time.Now()
		if sleep(stop, time.Hour) {
			t.Errorf("sleep(closed after 1s, 1h) = true, want false")
		}
		if got := time.Since(start); got != time.Second {
			t.Errorf("sleep(closed after 1s, 1h) took %v, want 1s", got)
		}
	})
}

func TestRing(t *testing.T) {
	var r ring
	if got := r.lines(); len(got) != 0 {
		t.Errorf("lines() of an empty ring = %q, want none", got)
	}
	for i := range 3 {
		r.add(string(rune('a' + i)))
	}
	if got := r.lines(); len(got) != 3 || got[0] != "a" || got[2] != "c" {
		t.Errorf("lines() after a, b, c = %q", got)
	}
	for i := range 30 {
		r.add(string(rune('A' + i)))
	}
	got := r.lines()
	if len(got) != tailLines || got[0] != string(rune('A'+30-tailLines)) || got[tailLines-1] != string(rune('A'+29)) {
		t.Errorf("lines() after 33 adds = %q, want the last %d", got, tailLines)
	}
}
