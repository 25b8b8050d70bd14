package lease_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/yolkgo/yolk/bus/bustest"
	"github.com/yolkgo/yolk/lease"
)

const ttl = 600 * time.Millisecond

// bucket opens the leases bucket on c through a connection of its own, which
// the test may close to play a holder that died.
func bucket(t *testing.T, c *bustest.Cluster) (jetstream.KeyValue, *nats.Conn) {
	t.Helper()
	nc, err := nats.Connect(c.ClientURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "leases", TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return kv, nc
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// hold runs l.Hold until the returned stop is called.
func hold(l *lease.Lease) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.Hold(ctx) }()
	return func() { cancel(); <-done }
}

// Three holders: one holds at a time; each tick is claimed once whoever
// tries; a holder that dies (its connection gone, no goodbye) is replaced
// within the TTL and a try; one that stops hands over at once, its last tick
// with it; the fencing tokens only grow.
func TestOneHolderEachTickOnce(t *testing.T) {
	c := bustest.NewCluster(t)
	var ls []*lease.Lease
	var ncs []*nats.Conn
	var stops []func()
	for _, name := range []string{"a", "b", "c"} {
		kv, nc := bucket(t, c)
		l := lease.New(kv, "job", name, ttl)
		ls, ncs = append(ls, l), append(ncs, nc)
		stops = append(stops, hold(l))
	}
	defer func() {
		for _, s := range stops {
			s()
		}
	}()
	holder := func() int {
		n, who := 0, -1
		for i, l := range ls {
			if l.State().Held {
				n, who = n+1, i
			}
		}
		if n > 1 {
			t.Fatalf("%d holders at once", n)
		}
		return who
	}
	waitFor(t, 5*time.Second, "a holder", func() bool { return holder() >= 0 })

	ctx := context.Background()
	var last uint64
	claims := map[uint64]int{}
	var mu sync.Mutex
	claimAll := func(tick uint64) {
		var wg sync.WaitGroup
		for _, l := range ls {
			wg.Go(func() {
				fence, err := l.Claim(ctx, tick)
				if err == nil {
					mu.Lock()
					claims[tick]++
					if fence <= last {
						t.Errorf("fence %d after %d", fence, last)
					}
					last = fence
					mu.Unlock()
				} else if !errors.Is(err, lease.ErrNotHeld) && !errors.Is(err, lease.ErrDone) {
					t.Errorf("claim %d: %v", tick, err)
				}
			})
		}
		wg.Wait()
	}
	for tick := uint64(1); tick <= 5; tick++ {
		claimAll(tick)
		claimAll(tick) // again: done already
	}

	// The holder dies: its connection closes without a word.
	dead := holder()
	ncs[dead].Close()
	start := time.Now()
	waitFor(t, 3*time.Second, "another holder", func() bool { h := holder(); return h >= 0 && h != dead })
	if took := time.Since(start); took > ttl+lease.TryEvery+500*time.Millisecond {
		t.Errorf("takeover after %v, want within TTL %v plus %v", took, ttl, lease.TryEvery)
	}
	for tick := uint64(6); tick <= 8; tick++ {
		claimAll(tick)
	}

	// The holder stops: the next one takes over at once and knows tick 8 was claimed.
	h := holder()
	stops[h]()
	stops[h] = func() {}
	waitFor(t, 2*lease.TryEvery+200*time.Millisecond, "a holder after a clean stop", func() bool { return holder() >= 0 })
	claimAll(8)
	claimAll(9)

	for tick := uint64(1); tick <= 9; tick++ {
		if claims[tick] != 1 {
			t.Errorf("tick %d claimed %d times, want 1", tick, claims[tick])
		}
	}
}
