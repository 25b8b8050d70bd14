package cache

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Regression tests of issue 12: one order for every snapshot, the same bytes in
// every worker. Before it, snapshots were ordered by the wall-clock time of their
// fetch and travelled in refresh events the bus encoder re-escaped.

// stopHub takes the agent off the bus, as a kill does: nothing answers its events.
func (c *testCluster) stopHub() {
	c.t.Helper()
	_ = c.agent.Close() // bustest's own Close of it then does nothing
	c.hub = nil
}

// history records the versions each worker installs, in order.
type history struct {
	mu   sync.Mutex
	seen map[string][]string
}

func (h *history) add(id string, s *Snapshot) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.seen == nil {
		h.seen = map[string][]string{}
	}
	h.seen[id] = append(h.seen[id], s.Version)
}

// backwards returns, as an error, the first worker that installed a version
// lower than one it installed before (versions are numbers).
func (h *history) backwards() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, vs := range h.seen {
		high := -1
		for _, v := range vs {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("worker %s installed version %q", id, v)
			}
			if n < high {
				return fmt.Errorf("worker %s went back from %d to %d: %v", id, high, n, vs)
			}
			high = max(high, n)
		}
	}
	return nil
}

// steppingClock returns a clock that steps an hour back, then an hour forward,
// then again, at every read: what an NTP correction or a restored VM does to the
// wall clock, at its worst.
func steppingClock() func() time.Time {
	var n atomic.Int64
	return func() time.Time {
		return time.Now().Add(time.Duration(n.Add(1)%3-1) * time.Hour)
	}
}

// Issue 12, 2: after the clock stepped back, every new fetch looked older and was
// refused: the hub fetched, refused and announced nothing. With the hub's and the
// workers' clocks (and the source's fetch times) an hour off either way, every
// change still reaches every worker.
func TestRefreshIgnoresClockSteps(t *testing.T) {
	c := newTestCluster(t, "1", smallBody("1"))
	c.clock = steppingClock()
	c.remote.clock = steppingClock()
	c.startHub()
	c.startWorkers("w1", "w2")
	c.converge("1", smallBody("1"))
	for v := 2; v <= 6; v++ {
		version := strconv.Itoa(v)
		c.remote.set(version, smallBody(version))
		c.hub.Changed(version)
		c.converge(version, smallBody(version))
	}
}

// heldSource is a worker's remote whose next read, once armed, answers with what
// the remote held when the read began, but only when released: a slow read of
// data that is old by the time it returns.
type heldSource struct {
	Source
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (h *heldSource) Check(ctx context.Context, version string) (*Snapshot, error) {
	if !h.armed.CompareAndSwap(true, false) {
		return h.Source.Check(ctx, version)
	}
	s, err := h.Source.Check(ctx, version)
	close(h.entered)
	select {
	case <-h.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s, err
}

// Issue 12, 3: a fetch was stamped when its read completed, so a slow read of old
// data outranked a fast read of newer data, and workers went 3 → 5 → 4 and stayed
// there. A publish is compare-and-set on the entry the read started from now: the
// slow read of 4 loses to the 5 published meanwhile, and is thrown away.
func TestSlowReadOfOldDataLoses(t *testing.T) {
	c := newTestCluster(t, "3", smallBody("3"))
	held := &heldSource{Source: c.remote.as("w1"), entered: make(chan struct{}), release: make(chan struct{})}
	c.source = func(id string) Source {
		if id == "w1" {
			return held
		}
		return c.remote.as(id)
	}
	var h history
	c.onUpdate = h.add
	c.startWorkers("w1", "w2") // no agent: the workers read the remote themselves
	c.converge("3", smallBody("3"))
	w1, w2 := c.workers[0], c.workers[1]

	c.remote.set("4", smallBody("4"))
	held.armed.Store(true)
	slow := make(chan error, 1)
	go func() { slow <- w1.rep.fetchRemote(t.Context(), "pull") }()
	receiveWithin(t, held.entered, patience, "w1's read of 4")

	c.remote.set("5", smallBody("5"))
	if err := w2.rep.fetchRemote(t.Context(), "pull"); err != nil {
		t.Fatalf("w2's read of 5: %v", err)
	}
	c.converge("5", smallBody("5"))
	close(held.release)
	select {
	case err := <-slow:
		if err != nil {
			t.Fatalf("w1's slow read: %v", err)
		}
	case <-time.After(patience):
		t.Fatal("w1's slow read did not return")
	}
	if err := c.holding("5", smallBody("5"))(); err != nil {
		t.Errorf("after the slow read of 4 returned: %v", err)
	}
	if err := h.backwards(); err != nil {
		t.Error(err)
	}
}

// Issue 12: "no worker ever goes back to an older version", with every cause of it
// at once: clocks that step an hour either way, a remote whose reads are slow (and
// so return data that is old by then), and the agent away for half of the changes,
// with the workers pulling in its place.
func TestNoWorkerGoesBack(t *testing.T) {
	c := newTestCluster(t, "1", smallBody("1"))
	c.clock = steppingClock()
	c.remote.clock = steppingClock()
	c.pullEvery = 30 * time.Millisecond
	var h history
	c.onUpdate = h.add
	c.source = func(id string) Source { return slowSource{c.remote.as(id)} }
	c.startHub()
	c.startWorkers("w1", "w2", "w3")
	ctx, cancel := context.WithTimeout(t.Context(), 4*patience)
	defer cancel()

	last := 1
	for v := 2; v <= 40; v++ {
		if v == 20 {
			c.stopHub()
		}
		last = v
		version := strconv.Itoa(v)
		c.remote.set(version, smallBody(version))
		if c.hub != nil {
			c.hub.Changed(version)
		} else {
			for _, w := range c.workers {
				go w.rep.fetchRemote(ctx, "pull") // racing reads, some slow
			}
		}
		time.Sleep(5 * time.Millisecond) // changes at a pace, not in one burst
	}
	c.converge(strconv.Itoa(last), smallBody(strconv.Itoa(last)))
	if err := h.backwards(); err != nil {
		t.Error(err)
	}
}

// slowSource delays each read of a worker's remote by up to 20 ms after it has
// read the remote: what it returns may be old by then.
type slowSource struct{ Source }

func (s slowSource) Check(ctx context.Context, version string) (*Snapshot, error) {
	snap, err := s.Source.Check(ctx, version)
	time.Sleep(time.Duration(rand.N(20)) * time.Millisecond)
	return snap, err
}

func (s slowSource) Fetch(ctx context.Context) (*Snapshot, error) {
	snap, err := s.Source.Fetch(ctx)
	time.Sleep(time.Duration(rand.N(20)) * time.Millisecond)
	return snap, err
}

// tricky are values that an encoder which escapes HTML (encoding/json's
// Marshal) or line separators would change: <, >, &, non-ASCII, U+2028 and
// U+2029, and escapes the source chose itself.
const tricky = `{"html":"<b>Tom & Jerry</b>","cmp":"a<b>c","amp":"&amp;","utf8":"héllo wörld 日本 😀",` +
	`"ls":"line\u2028sep\u2029para","raw":"` + "line\u2028sep\u2029para" + `","esc":"\u003cb\u003e","nested":{"x":["<",">","&"]}}`

// trickyBody is a data set of n items heavy in tricky values.
func trickyBody(tag string, n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{`)
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"k%05d":{"tag":%q,"v":%s}`, i, tag+"<&>", tricky)
	}
	b.WriteString(`}`)
	return b.Bytes()
}

// Issue 12, 4: workers that got a snapshot by push served "<" as "\u003c" (the
// bus encoder escaped the inline snapshot), and a snapshot heavy in <>& grew past
// the bus's payload limit and reached no worker. The bytes every worker serves are
// the bytes the hub read, whichever way they came: start, push, force, a pull
// while the agent is away, a restart; and a 700 KiB snapshot of them arrives.
func TestBytesAreTheSourcesOnEveryPath(t *testing.T) {
	body := func(tag string) []byte { return trickyBody(tag, 3) }
	c := newTestCluster(t, "1", body("1"))
	c.pullEvery = 50 * time.Millisecond
	c.startHub()
	c.startWorkers("w1", "w2")
	same := func(version string, b []byte) {
		t.Helper()
		c.converge(version, b) // compares each worker's items with the source's, byte for byte
		want, err := NewSnapshot(version, time.Now(), b)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(want.itemsJSON()), "<b>Tom & Jerry</b>") || !strings.Contains(string(want.itemsJSON()), "\u2028") {
			t.Fatalf("the source's items lost their <, & or U+2028 already: %.200s", want.itemsJSON())
		}
	}
	same("1", body("1"))

	c.remote.set("2", body("2")) // push
	c.hub.Changed("2")
	same("2", body("2"))

	c.remote.set("3", body("3")) // force
	for _, w := range c.workers {
		if err := w.rep.Force(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
	}
	same("3", body("3"))

	c.startWorkers("w3") // a worker's start
	same("3", body("3"))

	big := trickyBody("4", 3200)
	if n := len(big); n < 700<<10 || n > InlineLimit {
		t.Fatalf("the large tricky body is %d bytes, want 700 KiB to InlineLimit", n)
	}
	c.remote.set("4", big) // 700 KiB, inline
	c.hub.Changed("4")
	same("4", big)

	c.stopHub() // a pull by a worker while the agent is away
	c.remote.set("5", body("5"))
	same("5", body("5"))

	c.startHub() // the agent's restart
	same("5", body("5"))
}

// Issue 12, 7: catch-up and force compared only the version string, so a worker
// that missed "same version, other data" kept the old data for ever. A force sees
// the other data, and every worker (also one that starts afterwards) ends on it.
func TestForceSeesOtherDataUnderTheSameVersion(t *testing.T) {
	c := startCluster(t, 2)
	other := smallBody("other data")
	c.remote.set("v1", other)
	for _, w := range c.workers {
		if err := w.rep.Pull(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.holding("v1", smallBody("v1"))(); err != nil {
		t.Fatalf("a pull (a conditional read) cannot see it, and changed something: %v", err)
	}
	for _, w := range c.workers {
		if err := w.rep.Force(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
	}
	c.startWorkers("w3")
	c.converge("v1", other)
}

// Issue 12, 9: push, pull and force all started in the agent, so a change made
// while it was away waited for its return. The workers pull in its place, one of
// them per interval, and a change reaches every one within the interval (plus the
// look for the agent).
func TestWorkersPullWhileTheAgentIsAway(t *testing.T) {
	c := newTestCluster(t, "1", smallBody("1"))
	c.pullEvery = 300 * time.Millisecond
	c.startHub()
	c.startWorkers("w1", "w2", "w3")
	c.converge("1", smallBody("1"))
	kv := c.bucket(c.workers[0].conn)
	c.stopHub()
	// the workers notice: one of them takes the pull lease
	eventually(t, patience, func() error {
		if _, err := kv.Get(t.Context(), keyPull); err != nil {
			return fmt.Errorf("pull lease: %w", err)
		}
		return nil
	})

	for v := 2; v <= 4; v++ {
		version := strconv.Itoa(v)
		mark := c.remote.mark()
		start := time.Now()
		c.remote.set(version, smallBody(version))
		c.converge(version, smallBody(version))
		if took, bound := time.Since(start), c.pullEvery+pingWait+time.Second; took > bound {
			t.Errorf("version %s reached every worker in %v with the agent away, want within %v", version, took, bound)
		}
		if n := len(c.remote.since(mark)); n > 2 {
			t.Errorf("version %s: %d reads of the remote by 3 workers in one interval, want 1 (2 at a turn): %v", version, n, c.remote.since(mark))
		}
	}
	// over several intervals, about one read per interval, not one per worker
	mark := c.remote.mark()
	time.Sleep(5 * c.pullEvery)
	if n := len(c.remote.since(mark)); n < 2 || n > 7 {
		t.Errorf("%d reads of the remote in 5 pull intervals by 3 workers, want about 5: %v", n, c.remote.since(mark))
	}
}
