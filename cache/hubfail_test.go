package cache

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// A restarted agent takes the service's snapshot from the shared store: with the
// remote down it is at once on the data the workers serve, and a worker that
// starts then is ready with it.
func TestHubRestartTakesTheSharedSnapshot(t *testing.T) {
	c := startCluster(t, 1)
	first := c.hub
	down := errors.New("remote is down")
	c.remote.onFetch(func(context.Context) (*Snapshot, error) { return nil, down })
	c.remote.onCheck(func(context.Context, string) (*Snapshot, error) { return nil, down })
	if err := c.agent.Close(); err != nil {
		t.Fatal(err)
	}
	c.startHub() // a new agent "a1", as after a restart
	if c.hub == first {
		t.Fatal("the hub did not restart")
	}
	if got := versionOf(c.hub.Load()); got != "v1" {
		t.Fatalf("restarted hub ready with %s and the remote down, want v1 from the shared store", got)
	}
	c.startWorkers("w2")
	c.converge("v1", smallBody("v1"))
	for _, r := range c.remote.since(0) {
		if r.err == nil && r.who != "hub" {
			t.Errorf("a worker read the remote: %v", r)
		}
	}
}

// TestHubBacksOffAFailingRemote: while the remote fails, pushes (a change feed
// announces a change every 20 ms here) must not make the hub read it at their
// rate: it retries with backoff, and the retry serves what was asked meanwhile.
// (Found by the chaos tests: a failing source was read, and a warning logged, at
// every change.)
func TestHubBacksOffAFailingRemote(t *testing.T) {
	c := startCluster(t, 1)
	down := errors.New("remote is down")
	var failing atomic.Bool
	failing.Store(true)
	c.remote.onCheck(func(ctx context.Context, version string) (*Snapshot, error) {
		if failing.Load() {
			return nil, down
		}
		return c.remote.answerCheck(version)
	})
	mark := c.remote.mark()
	const span = 1500 * time.Millisecond
	for start := time.Now(); time.Since(start) < span; time.Sleep(20 * time.Millisecond) {
		c.hub.Changed("")
	}
	// the first push reads at once, then retries after 0.4-0.5 s and 0.8-1 s
	if reads := c.remote.since(mark); len(reads) > 3 {
		t.Errorf("%d reads of a failing remote in %v of pushes every 20 ms, want at most 3 (backoff from 500 ms): %v", len(reads), span, reads)
	}
	// Once it answers again, the pending retry brings the change.
	c.remote.set("v2", smallBody("v2"))
	failing.Store(false)
	c.converge("v2", smallBody("v2"))
}
