package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/broker"
	"github.com/yolkgo/yolk/bus/bustest"
)

// The refresh protocol over a real broker: an agent Conn ("a1") runs a Hub, worker
// Conns run Replicas, each with its own Store, and a fakeSource is the remote.

// patience bounds every wait for something that takes milliseconds when it works.
const patience = 5 * time.Second

// fakeSource is the remote source. Every read serves the data set last given to
// set as a snapshot fetched now, unless a fetch or check hook says otherwise. It
// records each read and who made it.
type fakeSource struct {
	mu      sync.Mutex
	version string
	body    []byte
	fetch   func(ctx context.Context) (*Snapshot, error)                 // nil: serve
	check   func(ctx context.Context, version string) (*Snapshot, error) // nil: answerCheck
	reads   []remoteRead
}

// remoteRead is one read of the fake remote, recorded when it returned.
type remoteRead struct {
	who  string // "hub" or a worker's id
	kind string // "fetch" or "check"
	err  error
}

func (r remoteRead) String() string {
	if r.err != nil {
		return fmt.Sprintf("%s %s (%v)", r.who, r.kind, r.err)
	}
	return r.who + " " + r.kind
}

func newFakeSource(version string, body []byte) *fakeSource {
	return &fakeSource{version: version, body: body}
}

// set makes the remote serve body as version from now on.
func (f *fakeSource) set(version string, body []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.version, f.body = version, body
}

func (f *fakeSource) onFetch(fn func(ctx context.Context) (*Snapshot, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fetch = fn
}

func (f *fakeSource) onCheck(fn func(ctx context.Context, version string) (*Snapshot, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.check = fn
}

// serve returns the current data set as a snapshot fetched now.
func (f *fakeSource) serve() (*Snapshot, error) {
	f.mu.Lock()
	version, body := f.version, f.body
	f.mu.Unlock()
	return NewSnapshot(version, time.Now(), body)
}

// answerCheck answers a conditional read as an HTTP source does: not modified
// when version is the current one.
func (f *fakeSource) answerCheck(version string) (*Snapshot, error) {
	f.mu.Lock()
	cur, body := f.version, f.body
	f.mu.Unlock()
	if version != "" && version == cur {
		return nil, ErrNotModified
	}
	return NewSnapshot(cur, time.Now(), body)
}

func (f *fakeSource) record(who, kind string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads = append(f.reads, remoteRead{who: who, kind: kind, err: err})
}

// mark returns a position in the record of reads, for since.
func (f *fakeSource) mark() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reads)
}

// since returns the reads recorded after mark.
func (f *fakeSource) since(mark int) []remoteRead {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]remoteRead(nil), f.reads[mark:]...)
}

// as returns the Source that process who uses: the same remote, its reads
// recorded under who.
func (f *fakeSource) as(who string) Source { return remoteAs{f: f, who: who} }

type remoteAs struct {
	f   *fakeSource
	who string
}

func (r remoteAs) Fetch(ctx context.Context) (*Snapshot, error) {
	r.f.mu.Lock()
	fn := r.f.fetch
	r.f.mu.Unlock()
	var (
		s   *Snapshot
		err error
	)
	if fn != nil {
		s, err = fn(ctx)
	} else {
		s, err = r.f.serve()
	}
	r.f.record(r.who, "fetch", err)
	return s, err
}

func (r remoteAs) Check(ctx context.Context, version string) (*Snapshot, error) {
	r.f.mu.Lock()
	fn := r.f.check
	r.f.mu.Unlock()
	var (
		s   *Snapshot
		err error
	)
	if fn != nil {
		s, err = fn(ctx, version)
	} else {
		s, err = r.f.answerCheck(version)
	}
	r.f.record(r.who, "check", err)
	return s, err
}

// count returns how many of reads are of kind ("" for any) by who ("" for anyone).
func count(reads []remoteRead, who, kind string) int {
	n := 0
	for _, r := range reads {
		if (who == "" || r.who == who) && (kind == "" || r.kind == kind) {
			n++
		}
	}
	return n
}

// dataBody returns a JSON object of keys items "k00000".. whose values are
// strings of about size bytes that start with tag, so two tags give two data sets.
func dataBody(tag string, keys, size int) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		v := fmt.Sprintf("%s-%d-", tag, i)
		v += strings.Repeat("x", max(size-len(v), 0))
		fmt.Fprintf(&b, "%q:%q", fmt.Sprintf("k%05d", i), v)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// smallBody is a data set that always travels inline.
func smallBody(tag string) []byte { return dataBody(tag, 3, 8) }

// bigBody is a data set of about 1.2 MB: several chunks of ChunkSize.
func bigBody(tag string) []byte { return dataBody(tag, 4000, 300) }

// runInBackground runs run(ctx, ready) in a goroutine until the test ends: then it
// cancels ctx and waits for run to return. It returns a channel that ready closes.
func runInBackground(t *testing.T, name string, run func(ctx context.Context, ready func()) error) <-chan struct{} {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	ready := make(chan struct{})
	var once sync.Once
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, func() { once.Do(func() { close(ready) }) })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("%s.Run: %v", name, err)
			}
		case <-time.After(patience):
			t.Errorf("%s.Run did not return within %v of its context's end", name, patience)
		}
	})
	return ready
}

// eventually polls check until it returns nil, and fails the test with its last
// error if that takes longer than d.
func eventually(t *testing.T, d time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", d, err)
		}
		<-tick.C
	}
}

// receiveWithin waits for ch to be closed or to deliver, failing the test after d.
func receiveWithin[T any](t *testing.T, ch <-chan T, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("%s: nothing within %v", what, d)
	}
}

func versionOf(s *Snapshot) string {
	if s == nil {
		return "nothing"
	}
	return s.Version
}

// testCluster is a broker with an agent running a Hub and workers running
// Replicas, all reading one fake remote.
type testCluster struct {
	t           *testing.T
	broker      *broker.Broker
	remote      *fakeSource
	startWithin time.Duration // how long a replica may take to become ready
	agent       *bus.Conn
	hub         *Hub
	workers     []*testWorker
}

type testWorker struct {
	id    string
	conn  *bus.Conn
	store *Store
	rep   *Replica
}

// newTestCluster starts a broker; the remote serves body as version.
func newTestCluster(t *testing.T, version string, body []byte) *testCluster {
	return &testCluster{t: t, broker: bustest.NewBroker(t), remote: newFakeSource(version, body), startWithin: patience}
}

// startCluster starts a hub and n workers w1..wn on a remote serving a small v1.
func startCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	c := newTestCluster(t, "v1", smallBody("v1"))
	c.startHub()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("w%d", i+1)
	}
	c.startWorkers(ids...)
	c.converge("v1", smallBody("v1"))
	return c
}

// startHub dials the agent "a1", runs a Hub on it and waits until it is ready.
func (c *testCluster) startHub() {
	c.t.Helper()
	c.agent = bustest.Dial(c.t, c.broker, bus.RoleAgent, "a1")
	c.hub = NewHub(c.agent, c.remote.as("hub"), bustest.Logger(c.t))
	receiveWithin(c.t, runInBackground(c.t, "Hub", c.hub.Run), patience, "Hub ready")
}

// startWorkers dials a worker for each id and starts their replicas together.
func (c *testCluster) startWorkers(ids ...string) []*testWorker {
	c.t.Helper()
	conns := make([]*bus.Conn, len(ids))
	for i, id := range ids {
		conns[i] = bustest.Dial(c.t, c.broker, bus.RoleWorker, id)
	}
	return c.startReplicas(conns...)
}

// startReplicas runs a Replica with a Store of its own on each conn, all at
// once, and waits until every one is ready.
func (c *testCluster) startReplicas(conns ...*bus.Conn) []*testWorker {
	c.t.Helper()
	ws := make([]*testWorker, len(conns))
	readies := make([]<-chan struct{}, len(conns))
	for i, conn := range conns {
		w := &testWorker{id: conn.ID(), conn: conn, store: new(Store)}
		w.rep = NewReplica(conn, c.remote.as(w.id), w.store, nil, bustest.Logger(c.t))
		readies[i] = runInBackground(c.t, "Replica "+w.id, w.rep.Run)
		ws[i] = w
	}
	deadline := time.NewTimer(c.startWithin)
	defer deadline.Stop()
	for i, ready := range readies {
		select {
		case <-ready:
		case <-deadline.C:
			c.t.Fatalf("replica %s not ready within %v: it holds %s", ws[i].id, c.startWithin, versionOf(ws[i].store.Load()))
		}
	}
	c.workers = append(c.workers, ws...)
	return ws
}

// holding reports, as an error, the first process (the hub if any, then each
// worker) that does not hold body as version.
func (c *testCluster) holding(version string, body []byte) func() error {
	ref, err := NewSnapshot(version, time.Now(), body)
	differs := func(who string, s *Snapshot) error {
		if err != nil {
			return err
		}
		want := ref.itemsJSON()
		switch {
		case s == nil:
			return fmt.Errorf("%s holds nothing, want %s", who, version)
		case s.Version != version:
			return fmt.Errorf("%s holds %s, want %s", who, s.Version, version)
		case !bytes.Equal(s.itemsJSON(), want):
			return fmt.Errorf("%s holds %s with other data (%d items, %d bytes; want %d bytes)", who, version, len(s.Items), len(s.itemsJSON()), len(want))
		}
		return nil
	}
	return func() error {
		if c.hub != nil {
			if err := differs("hub", c.hub.Load()); err != nil {
				return err
			}
		}
		for _, w := range c.workers {
			if err := differs("worker "+w.id, w.store.Load()); err != nil {
				return err
			}
		}
		return nil
	}
}

// converge waits until the hub and every worker hold body as version.
func (c *testCluster) converge(version string, body []byte) {
	c.t.Helper()
	eventually(c.t, patience, c.holding(version, body))
}

func TestRefreshColdStart(t *testing.T) {
	c := newTestCluster(t, "v1", smallBody("v1"))
	c.startHub()
	if got := versionOf(c.hub.Load()); got != "v1" {
		t.Fatalf("hub ready with %s, want v1", got)
	}
	for _, w := range c.startWorkers("w1", "w2", "w3") {
		// ready means the first snapshot is installed: no waiting here
		if got := versionOf(w.store.Load()); got != "v1" {
			t.Errorf("replica %s ready with %s, want v1", w.id, got)
		}
	}
	if err := c.holding("v1", smallBody("v1"))(); err != nil {
		t.Error(err)
	}
	reads := c.remote.since(0)
	if len(reads) != 1 || reads[0] != (remoteRead{who: "hub", kind: "fetch"}) {
		t.Errorf("remote reads = %v, want one: hub fetch (the replicas catch up from the agent)", reads)
	}
}

func TestRefreshPush(t *testing.T) {
	tests := []struct {
		name      string
		announced string // what the change feed says: Changed(announced)
	}{
		{name: "announced version", announced: "v2"},
		{name: "unknown version", announced: ""}, // the feed's first connect
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := startCluster(t, 3)
			mark := c.remote.mark()
			c.remote.set("v2", smallBody("v2"))
			c.hub.Changed(tc.announced)
			c.converge("v2", smallBody("v2"))

			// Changed of the version the hub holds costs nothing, at once.
			c.hub.Changed("v2")
			reads := c.remote.since(mark)
			if len(reads) != 1 || reads[0] != (remoteRead{who: "hub", kind: "check"}) {
				t.Errorf("remote reads after Changed(%q) = %v, want one: hub check", tc.announced, reads)
			}
		})
	}
}

func TestRefreshCoalescesPushes(t *testing.T) {
	c := startCluster(t, 3)
	entered := make(chan struct{})
	release := make(chan struct{})
	var checks atomic.Int32
	c.remote.onCheck(func(ctx context.Context, version string) (*Snapshot, error) {
		if checks.Add(1) > 1 {
			return c.remote.answerCheck(version)
		}
		s, err := c.remote.answerCheck(version) // what the remote held when asked
		close(entered)
		select {
		case <-release:
			return s, err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	mark := c.remote.mark()

	c.remote.set("v2", smallBody("v2"))
	c.hub.Changed("v2")
	receiveWithin(t, entered, patience, "the hub's first check")
	final := ""
	for i := range 50 {
		final = fmt.Sprintf("v%d", i+3)
		c.remote.set(final, smallBody(final))
		c.hub.Changed(final)
	}
	close(release)

	c.converge(final, smallBody(final))
	reads := c.remote.since(mark)
	if n := len(reads); n > 3 {
		t.Errorf("51 pushes, the first still in flight during the other 50, made %d remote reads, want at most 3: %v", n, reads)
	}
	if n := count(reads, "hub", ""); n != len(reads) {
		t.Errorf("remote reads = %v, want only the hub's", reads)
	}
	t.Logf("remote reads: %v", reads)
}

func TestRefreshForceFetchesOncePerRun(t *testing.T) {
	c := startCluster(t, 3)
	rounds := []struct {
		name    string
		seq     uint64
		version string // what the remote serves during the round
	}{
		{name: "new version", seq: 7, version: "v2"},
		{name: "next run", seq: 8, version: "v3"},
		{name: "unchanged remote", seq: 9, version: "v3"},
	}
	for _, r := range rounds {
		t.Run(r.name, func(t *testing.T) {
			c.remote.set(r.version, smallBody(r.version))
			mark := c.remote.mark()
			ctx, cancel := context.WithTimeout(t.Context(), 2*patience)
			defer cancel()
			errs := make([]error, len(c.workers))
			var wg sync.WaitGroup
			for i, w := range c.workers {
				wg.Go(func() { errs[i] = w.rep.Force(ctx, r.seq) })
			}
			wg.Wait()
			for i, w := range c.workers {
				if errs[i] != nil {
					t.Errorf("replica %s: Force(%d): %v", w.id, r.seq, errs[i])
				}
				// Force returns once the worker is on the fetched version.
				if got := versionOf(w.store.Load()); got != r.version {
					t.Errorf("replica %s after Force(%d) holds %s, want %s", w.id, r.seq, got, r.version)
				}
			}
			if err := c.holding(r.version, smallBody(r.version))(); err != nil {
				t.Error(err)
			}
			reads := c.remote.since(mark)
			if len(reads) != 1 || reads[0] != (remoteRead{who: "hub", kind: "fetch"}) {
				t.Errorf("remote reads for Force(%d) from %d workers = %v, want one: hub fetch", r.seq, len(c.workers), reads)
			}
		})
	}
}

// chunkCounter wraps an asker: it counts the requests, notes the offset of each
// reply, calls after with the count after each reply (the holder may move on
// there), and refuses requests past limit, so that a copy that keeps starting
// over fails instead of running until its context ends. copyFrom asks one chunk
// at a time, so it needs no lock.
type chunkCounter struct {
	ask     asker
	limit   int
	after   func(n int)
	n       int
	offsets []int
}

var errTooManyChunks = errors.New("test: too many chunk requests")

func (c *chunkCounter) asker() asker {
	return func(ctx context.Context, req chunkRequest) (bus.Message, error) {
		if c.n >= c.limit {
			return bus.Message{}, errTooManyChunks
		}
		m, err := c.ask(ctx, req)
		c.n++
		var r chunkReply
		if err == nil && m.Decode(&r) == nil {
			c.offsets = append(c.offsets, r.Offset)
		}
		if c.after != nil {
			c.after(c.n)
		}
		return m, err
	}
}

// chunks is how many chunks a snapshot of n bytes is copied in.
func chunks(n int) int { return (n + ChunkSize - 1) / ChunkSize }

func TestRefreshLargeSnapshot(t *testing.T) {
	big1, big2 := bigBody("v1"), bigBody("v2")
	if n := len(mustSnapshot(t, "v1", time.Now(), string(big1)).Encode()); n <= InlineLimit || chunks(n) < 3 {
		t.Fatalf("the large data set encodes in %d bytes: want more than InlineLimit (%d) and at least 3 chunks of %d", n, InlineLimit, ChunkSize)
	}

	t.Run("copyFrom the hub", func(t *testing.T) {
		c := newTestCluster(t, "v1", big1)
		c.startHub()
		want := c.hub.Load()
		size := len(want.Encode())
		conn := bustest.Dial(t, c.broker, bus.RoleWorker, "w1")
		cc := &chunkCounter{ask: askProcess(conn, "a1"), limit: chunks(size) + 2}
		got, err := copyFrom(t.Context(), cc.asker(), "a1", "")
		if errors.Is(err, errTooManyChunks) {
			t.Fatalf("copyFrom of the hub's %d-byte snapshot made %d chunk requests without finishing (want %d); reply offsets %v: the hub keeps starting over at offset 0",
				size, cc.n, chunks(size), cc.offsets)
		}
		if err != nil {
			t.Fatalf("copyFrom of the hub's %d-byte snapshot: %v", size, err)
		}
		if cc.n != chunks(size) {
			t.Errorf("copyFrom of %d bytes made %d chunk requests, want %d", size, cc.n, chunks(size))
		}
		if got == nil || got.Version != want.Version || !got.FetchedAt.Equal(want.FetchedAt) || !bytes.Equal(got.itemsJSON(), want.itemsJSON()) {
			t.Errorf("copyFrom = %s, want the hub's %s with identical items", versionOf(got), want.Version)
		}
	})

	// When a copy in chunks fails, the subtest above says why.
	hint := func(t *testing.T) {
		t.Cleanup(func() {
			if t.Failed() {
				t.Log("replicas copy a snapshot larger than ChunkSize from its holder in chunks: see the copyFrom subtest")
			}
		})
	}

	t.Run("catch-up", func(t *testing.T) {
		hint(t)
		c := newTestCluster(t, "v1", big1)
		// Copying 4000 items in chunks to three replicas at once takes seconds
		// under -race on a loaded machine (a CI run once took 5s).
		c.startWithin = 4 * patience
		c.startHub()
		c.startWorkers("w1", "w2", "w3")
		c.converge("v1", big1)
		if reads := c.remote.since(0); len(reads) != 1 {
			t.Errorf("remote reads = %v, want one: hub fetch", reads)
		}
	})

	t.Run("push by reference", func(t *testing.T) {
		hint(t)
		c := startCluster(t, 3)
		// A replica whose copy never finishes holds its refresh handler, and
		// with it its Conn's Close, until the copy fails: closing the holder
		// (the agent) first makes it fail in 2s rather than at the 30s drain
		// timeout of each worker.
		t.Cleanup(func() {
			if t.Failed() {
				_ = c.agent.Close() // bustest's own Close of it then does nothing
			}
		})
		mark := c.remote.mark()
		c.remote.set("v2", big2)
		c.hub.Changed("v2")
		c.converge("v2", big2)
		if reads := c.remote.since(mark); len(reads) != 1 {
			t.Errorf("remote reads = %v, want one: hub check", reads)
		}
	})
}

func TestCopyFromHolderMovesOn(t *testing.T) {
	clocks := []struct {
		name string
		now  func() time.Time
	}{
		// time.Now is what a source stamps a fetch with; UTC is what a snapshot
		// decoded from the bus carries (in a process whose local zone is UTC).
		{name: "local clock", now: time.Now},
		{name: "UTC", now: func() time.Time { return time.Now().UTC() }},
	}
	tests := []struct {
		name        string
		nextVersion string // "": the holder keeps its snapshot
		nextBody    []byte
		swapAfter   int // the holder swaps after this many chunk replies
	}{
		{name: "holder stays"},
		{name: "same version, larger", nextVersion: "v1", nextBody: dataBody("again", 5000, 300), swapAfter: 1},
		{name: "same version, one chunk", nextVersion: "v1", nextBody: dataBody("again", 100, 300), swapAfter: 1},
		{name: "other version, smaller", nextVersion: "v2", nextBody: dataBody("v2", 2500, 300), swapAfter: 1},
		{name: "same version, after two chunks", nextVersion: "v1", nextBody: dataBody("again", 3000, 300), swapAfter: 2},
	}
	b := bustest.NewBroker(t)
	holderConn := bustest.Dial(t, b, bus.RoleWorker, "h1")
	askerConn := bustest.Dial(t, b, bus.RoleWorker, "w1")
	for _, clock := range clocks {
		for _, tc := range tests {
			t.Run(clock.name+"/"+tc.name, func(t *testing.T) {
				old := mustSnapshot(t, "v1", clock.now(), string(bigBody("v1")))
				var holder Store
				holder.Swap(old)
				if err := holderConn.On(EventSnapshot, serveChunks(&holder)); err != nil {
					t.Fatalf("On(%s): %v", EventSnapshot, err)
				}
				want := old
				limit := chunks(len(old.Encode())) + 2
				cc := &chunkCounter{ask: askProcess(askerConn, "h1")}
				if tc.nextVersion != "" {
					next := mustSnapshot(t, tc.nextVersion, clock.now().Add(time.Millisecond), string(tc.nextBody))
					if len(next.Encode()) == len(old.Encode()) {
						t.Fatalf("the next snapshot has the size of the old one")
					}
					cc.after = func(n int) {
						if n == tc.swapAfter && !holder.Swap(next) {
							t.Errorf("the holder's Swap of the next snapshot failed")
						}
					}
					want = next
					limit += chunks(len(next.Encode()))
				}
				cc.limit = limit

				got, err := copyFrom(t.Context(), cc.asker(), "h1", "")
				switch {
				case errors.Is(err, errTooManyChunks):
					t.Fatalf("copyFrom made %d chunk requests without finishing; reply offsets %v: the holder did not recognise the snapshot named in the request (Of) and started over every time (compare the UTC rows)",
						cc.n, cc.offsets)
				case err != nil && tc.nextVersion == "":
					t.Fatalf("copyFrom from a holder that keeps its snapshot: %v", err)
				case err != nil:
					t.Logf("copyFrom while the holder moved on: %v (an error is allowed; mixed data is not)", err)
				case got == nil:
					t.Fatalf("copyFrom = nil, nil, want a snapshot")
				case bytes.Equal(got.itemsJSON(), want.itemsJSON()) && got.Version == want.Version && got.FetchedAt.Equal(want.FetchedAt):
					// entirely the holder's current snapshot
				case bytes.Equal(got.itemsJSON(), old.itemsJSON()):
					t.Errorf("copyFrom = the old snapshot, want the one the holder moved on to")
				default:
					t.Errorf("copyFrom = %s fetched at %v with %d items: neither the old snapshot nor the new one (mixed data)",
						got.Version, got.FetchedAt, len(got.Items))
				}
			})
		}
	}
}

func TestReplicaWithoutAgent(t *testing.T) {
	c := newTestCluster(t, "v1", smallBody("v1"))
	c.startWithin = 2 * patience // a replica waits 2s for the agent before it reads the remote
	c.startWorkers("w1", "w2")
	if err := c.holding("v1", smallBody("v1"))(); err != nil {
		t.Fatal(err)
	}
	if reads := c.remote.since(0); count(reads, "w1", "fetch") != 1 || count(reads, "w2", "fetch") != 1 || len(reads) != 2 {
		t.Errorf("remote reads at start without an agent = %v, want a fetch by each worker", reads)
	}

	mark := c.remote.mark()
	c.remote.set("v2", smallBody("v2"))
	const budget = 2 * time.Second
	ctx, cancel := context.WithTimeout(t.Context(), budget)
	defer cancel()
	start := time.Now()
	err := c.workers[0].rep.Pull(ctx)
	took, late := time.Since(start), ctx.Err()
	if err != nil {
		t.Errorf("Pull without an agent: %v", err)
	}
	if late != nil {
		t.Errorf("Pull without an agent took %v and returned after its context ended (%v): it must return before its %v deadline",
			took.Round(time.Millisecond), late, budget)
	}
	if got := versionOf(c.workers[0].store.Load()); got != "v2" {
		t.Errorf("w1 after Pull holds %s, want v2", got)
	}
	// w1 announces what it read, so w2 ends on it without a read of its own.
	eventually(t, patience, c.holding("v2", smallBody("v2")))
	if reads := c.remote.since(mark); len(reads) != 1 || reads[0] != (remoteRead{who: "w1", kind: "check"}) {
		t.Errorf("remote reads for Pull = %v, want one: w1 check", reads)
	}
}

func TestHubResyncRetriesFullFetch(t *testing.T) {
	c := startCluster(t, 2)
	// The source restarted and serves other data under the old version: only
	// a full fetch sees it.
	fresh := smallBody("restarted")
	c.remote.set("v1", fresh)
	var failed atomic.Bool
	c.remote.onFetch(func(context.Context) (*Snapshot, error) {
		if failed.CompareAndSwap(false, true) {
			return nil, errors.New("remote is restarting")
		}
		return c.remote.serve()
	})
	mark := c.remote.mark()
	c.hub.Resync()
	c.converge("v1", fresh)

	reads := c.remote.since(mark)
	if len(reads) == 0 || reads[0].kind != "fetch" || reads[0].err == nil {
		t.Fatalf("remote reads after Resync = %v, want a failed fetch first", reads)
	}
	for _, r := range reads {
		if r.err == nil {
			if r.kind != "fetch" {
				t.Errorf("after a failed full fetch, the next successful read was a %s, want a fetch; reads %v", r.kind, reads)
			}
			break
		}
	}
	if n := count(reads, "hub", ""); n != len(reads) {
		t.Errorf("remote reads = %v, want only the hub's", reads)
	}
}

func TestStale(t *testing.T) {
	at := time.Date(2025, 11, 26, 7, 0, 0, 0, time.UTC)
	have := mustSnapshot(t, "v1", at, `{"a":1}`)
	tests := []struct {
		name      string
		have      *Snapshot
		version   string
		fetchedAt time.Time
		want      bool
	}{
		{name: "nothing held", have: nil, version: "v1", fetchedAt: at, want: false},
		{name: "nothing held, hint", have: nil, version: "v1", want: false},
		{name: "same version, earlier", have: have, version: "v1", fetchedAt: at.Add(-time.Second), want: true},
		{name: "same version, same instant", have: have, version: "v1", fetchedAt: at, want: true},
		{name: "same version, later", have: have, version: "v1", fetchedAt: at.Add(time.Nanosecond), want: false},
		{name: "other version, earlier", have: have, version: "v2", fetchedAt: at.Add(-time.Second), want: true},
		{name: "other version, same instant", have: have, version: "v2", fetchedAt: at, want: true},
		{name: "other version, later", have: have, version: "v2", fetchedAt: at.Add(time.Second), want: false},
		{name: "hint of the same version", have: have, version: "v1", want: true},
		{name: "hint of another version", have: have, version: "v2", want: false},
		{name: "same version, later, other zone", have: have, version: "v1", fetchedAt: at.Add(time.Second).In(time.FixedZone("x", 3600)), want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Refresh{By: "push", Version: tc.version, FetchedAt: tc.fetchedAt, Holder: "w9"}
			if got := stale(r, tc.have); got != tc.want {
				t.Errorf("stale(%s at %v, have %s) = %v, want %v", tc.version, tc.fetchedAt, versionOf(tc.have), got, tc.want)
			}
		})
	}
}

// logBuffer keeps what a logger writes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// dialCapturing is bustest.Dial with the Conn's log also kept, to assert on what
// the bus logs.
func dialCapturing(t *testing.T, b *broker.Broker, role bus.Role, id string) (*bus.Conn, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	log := slog.New(slog.NewMultiHandler(
		bustest.Logger(t).Handler(),
		slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}),
	))
	cred := b.Mint(role, id)
	ctx, cancel := context.WithTimeout(t.Context(), patience)
	defer cancel()
	conn, err := bus.Dial(ctx, bus.Options{URL: b.ClientURL(), User: cred.User, Password: cred.Password, ID: id, Role: role, Logger: log})
	if err != nil {
		t.Fatalf("bus.Dial(%s, %q): %v", role, id, err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Errorf("Close of %s %q: %v", role, id, err)
		}
	})
	return conn, logs
}

func TestReplicaBadRefresh(t *testing.T) {
	t.Run("undecodable event", func(t *testing.T) {
		c := newTestCluster(t, "v1", smallBody("v1"))
		c.startHub()
		conn, logs := dialCapturing(t, c.broker, bus.RoleWorker, "w1")
		w := c.startReplicas(conn)[0]
		c.converge("v1", smallBody("v1"))
		before := w.store.Load()

		const logged = "bad refresh event from a1"
		for i, data := range []string{
			`{"version":7}`,
			`{"fetchedAt":"yesterday"}`,
			`"refresh"`,
			`[1,2,3]`,
		} {
			if err := c.agent.SendToApp(EventRefresh, json.RawMessage(data)); err != nil {
				t.Fatalf("SendToApp(%s, %s): %v", EventRefresh, data, err)
			}
			eventually(t, patience, func() error {
				if n := strings.Count(logs.String(), logged); n <= i {
					return fmt.Errorf("refresh event %s: %d log lines with %q, want %d", data, n, logged, i+1)
				}
				return nil
			})
			if got := w.store.Load(); got != before {
				t.Errorf("after refresh event %s the replica holds %s (%p), want its snapshot %s (%p)", data, versionOf(got), got, before.Version, before)
			}
		}

		// and it still takes the next good one
		c.remote.set("v2", smallBody("v2"))
		c.hub.Changed("v2")
		c.converge("v2", smallBody("v2"))
	})

	t.Run("holder gone", func(t *testing.T) {
		c := startCluster(t, 2)
		mark := c.remote.mark()
		// The agent holds v2, which the workers missed (events are at most once).
		if !c.hub.store.Swap(mustSnapshot(t, "v2", time.Now(), string(smallBody("v2"))).WithBy("push", time.Now())) {
			t.Fatalf("Swap of v2 into the hub's store failed")
		}
		// w9 read v3 itself, announced it by reference and went away.
		w9 := bustest.Dial(t, c.broker, bus.RoleWorker, "w9")
		ev := Refresh{By: "pull", Version: "v3", FetchedAt: time.Now(), Holder: "w9"}
		if err := w9.SendToApp(EventRefresh, ev); err != nil {
			t.Fatalf("SendToApp(%s): %v", EventRefresh, err)
		}
		if err := w9.Close(); err != nil {
			t.Fatalf("Close of w9: %v", err)
		}
		// A copy from w9 fails after its 2s request timeout; then the replicas
		// catch up from the agent.
		eventually(t, 2*patience, c.holding("v2", smallBody("v2")))
		if reads := c.remote.since(mark); len(reads) != 0 {
			t.Errorf("remote reads = %v, want none", reads)
		}
	})
}
