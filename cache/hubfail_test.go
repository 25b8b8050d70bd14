package cache

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/bustest"
)

// TestHubWarmsFromAWorkerAfterItsStart: an agent that starts while the remote is
// down, and finds no worker with data at that moment (none answered its 50 ms
// look in time), must copy the data from a worker that holds it as soon as it
// can, so that workers which start afterwards get the service's data without the
// remote. (Found by the chaos soak: a restarted agent that missed the look left
// every restarted worker waiting for the first snapshot until the remote was back.)
func TestHubWarmsFromAWorkerAfterItsStart(t *testing.T) {
	c := newTestCluster(t, "v1", smallBody("v1"))
	down := errors.New("remote is down")
	c.remote.onFetch(func(context.Context) (*Snapshot, error) { return nil, down })
	c.remote.onCheck(func(context.Context, string) (*Snapshot, error) { return nil, down })
	c.startHub()
	if s := c.hub.Load(); s != nil {
		t.Fatalf("hub ready with %s and the remote down, want nothing", s.Version)
	}

	// A worker that kept the data through the agent's restart joins.
	held, err := NewSnapshot("v1", time.Now(), smallBody("v1"))
	if err != nil {
		t.Fatal(err)
	}
	w := &testWorker{id: "w1", conn: bustest.Dial(t, c.broker, bus.RoleWorker, "w1"), store: new(Store)}
	w.store.Swap(held)
	w.rep = NewReplica(w.conn, c.remote.as(w.id), w.store, nil, bustest.Logger(t))
	receiveWithin(t, runInBackground(t, "Replica w1", w.rep.Run), patience, "w1 ready")
	c.workers = append(c.workers, w)

	eventually(t, patience, func() error {
		if got := versionOf(c.hub.Load()); got != "v1" {
			return fmt.Errorf("hub holds %s, want v1 copied from w1", got)
		}
		return nil
	})
	// A worker that starts now is ready with the data, the remote still down.
	c.startWorkers("w2")
	c.converge("v1", smallBody("v1"))
	for _, r := range c.remote.since(0) {
		if r.err == nil {
			t.Errorf("a read of the remote succeeded while it was down: %v", r)
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
