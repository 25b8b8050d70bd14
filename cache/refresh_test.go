package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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
	clock   func() time.Time // the fetch times of the snapshots it serves; nil: time.Now
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
	return NewSnapshot(version, f.now(), body)
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
	return NewSnapshot(cur, f.now(), body)
}

func (f *fakeSource) now() time.Time {
	if f.clock != nil {
		return f.clock()
	}
	return time.Now()
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
	objects     jetstream.ObjectStore // the agent's view of the object store
	remote      *fakeSource
	startWithin time.Duration                // how long a replica may take to become ready
	pullEvery   time.Duration                // the replicas' PullEvery
	source      func(id string) Source       // a worker's remote; nil: remote.as(id)
	onUpdate    func(id string, s *Snapshot) // each worker's Replica.OnUpdate, if set
	clock       func() time.Time             // the hub's and replicas' Now, if set
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
	b := bustest.NewBrokerWith(t, broker.Config{Stores: []broker.Store{{Name: Bucket}, {Name: ObjectStore, Objects: true}}})
	return &testCluster{t: t, broker: b, remote: newFakeSource(version, body), startWithin: patience}
}

// jetStream returns the JetStream API on conn.
func (c *testCluster) jetStream(conn *bus.Conn) jetstream.JetStream {
	c.t.Helper()
	js, err := conn.JetStream()
	if err != nil {
		c.t.Fatal(err)
	}
	return js
}

// bucket opens the snapshot's bucket on conn.
func (c *testCluster) bucket(conn *bus.Conn) jetstream.KeyValue {
	c.t.Helper()
	kv, err := c.jetStream(conn).KeyValue(c.t.Context(), Bucket)
	if err != nil {
		c.t.Fatalf("open bucket %s: %v", Bucket, err)
	}
	return kv
}

// shared opens the shared snapshot on conn.
func (c *testCluster) shared(conn *bus.Conn) *Shared {
	c.t.Helper()
	obj, err := c.jetStream(conn).ObjectStore(c.t.Context(), ObjectStore)
	if err != nil {
		c.t.Fatalf("open object store %s: %v", ObjectStore, err)
	}
	if conn.Role() == bus.RoleAgent {
		c.objects = obj
	}
	return NewShared(c.bucket(conn), obj)
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
	c.hub.Now = c.clock
	sh := c.shared(c.agent)
	run := func(ctx context.Context, ready func()) error { return c.hub.Run(ctx, sh, ready) }
	receiveWithin(c.t, runInBackground(c.t, "Hub", run), patience, "Hub ready")
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
		src := c.remote.as(w.id)
		if c.source != nil {
			src = c.source(w.id)
		}
		w.rep = NewReplica(conn, src, w.store, nil, bustest.Logger(c.t))
		w.rep.PullEvery, w.rep.Now = c.pullEvery, c.clock
		if c.onUpdate != nil {
			id := w.id
			w.rep.OnUpdate = func(s *Snapshot) { c.onUpdate(id, s) }
		}
		sh := c.shared(conn)
		run := func(ctx context.Context, ready func()) error { return w.rep.Run(ctx, sh, ready) }
		readies[i] = runInBackground(c.t, "Replica "+w.id, run)
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

func TestRefreshLargeSnapshot(t *testing.T) {
	big1, big2 := bigBody("v1"), bigBody("v2")
	if n := len(mustSnapshot(t, "v1", time.Now(), string(big1)).itemsJSON()); n <= InlineLimit {
		t.Fatalf("the large data set is %d bytes: want more than InlineLimit (%d)", n, InlineLimit)
	}
	c := newTestCluster(t, "v1", big1)
	c.startWithin = 4 * patience // 4000 items decoded by three replicas under -race
	c.startHub()
	c.startWorkers("w1", "w2", "w3")
	c.converge("v1", big1)
	if reads := c.remote.since(0); len(reads) != 1 {
		t.Errorf("remote reads = %v, want one: hub fetch", reads)
	}
	mark := c.remote.mark()
	c.remote.set("v2", big2)
	c.hub.Changed("v2")
	c.converge("v2", big2)
	if reads := c.remote.since(mark); len(reads) != 1 {
		t.Errorf("remote reads = %v, want one: hub check", reads)
	}
	// the items of v1 are gone from the object store: only v2's are left
	ctx, cancel := context.WithTimeout(t.Context(), patience)
	defer cancel()
	names, err := c.objects.List(ctx)
	if err != nil || len(names) != 1 {
		t.Errorf("object store holds %d objects (%v), want 1", len(names), err)
	}
}

func TestReplicaWithoutAgent(t *testing.T) {
	c := newTestCluster(t, "v1", smallBody("v1"))
	c.startWithin = 2 * patience // a replica waits 2s for the agent before it reads the remote
	c.startWorkers("w1", "w2")
	if err := c.holding("v1", smallBody("v1"))(); err != nil {
		t.Fatal(err)
	}
	// Each worker read the remote at most once, and the second to publish kept
	// the first one's snapshot (or read nothing, having it already).
	if reads := c.remote.since(0); count(reads, "w1", "") > 1 || count(reads, "w2", "") > 1 || count(reads, "", "fetch") < 1 {
		t.Errorf("remote reads at start without an agent = %v, want one read by each worker at most, a fetch among them", reads)
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

// A record in the bucket that does not decode (a buggy or hostile writer) is
// refused with an error line, and the last good snapshot keeps serving; the next
// good one is installed.
func TestReplicaRefusesABadRecord(t *testing.T) {
	c := newTestCluster(t, "v1", smallBody("v1"))
	c.startHub()
	conn := bustest.Dial(t, c.broker, bus.RoleWorker, "w1")
	logs := &logBuffer{}
	w := &testWorker{id: "w1", conn: conn, store: new(Store)}
	w.rep = NewReplica(conn, c.remote.as(w.id), w.store, nil, slog.New(slog.NewTextHandler(logs, nil)))
	sh := c.shared(conn)
	receiveWithin(t, runInBackground(t, "Replica w1", func(ctx context.Context, ready func()) error { return w.rep.Run(ctx, sh, ready) }), patience, "w1 ready")
	c.workers = append(c.workers, w)
	c.converge("v1", smallBody("v1"))
	before := w.store.Load()
	good := mustSnapshot(t, "v9", time.Now(), `{"a":1}`)
	forged := strings.Replace(string(good.Encode()), `"a":1`, `"a":2`, 1)
	kv := c.bucket(c.agent)
	for i, data := range []string{
		`{"version":7}`,
		`"refresh"`,
		`{"by":"push","version":"v9","digest":"sha256:00","fetchedAt":"2026-01-01T00:00:00Z","items":{"a":1}}`,
		`{"by":"push",` + forged[1:],
		`{"by":"who knows",` + string(good.Encode()[1:]),
		`{"by":"push","version":"v9","digest":"` + good.Digest + `","fetchedAt":"2026-01-01T00:00:00Z","object":"missing","size":7}`,
	} {
		if _, err := kv.Put(t.Context(), keySnapshot, []byte(data)); err != nil {
			t.Fatal(err)
		}
		eventually(t, patience, func() error {
			if n := strings.Count(logs.String(), "shared snapshot refused"); n <= i {
				return fmt.Errorf("record %s: %d log lines, want %d", data, n, i+1)
			}
			return nil
		})
		if got := w.store.Load(); got != before {
			t.Errorf("after record %s the replica holds %s, want its snapshot %s", data, versionOf(got), before.Version)
		}
	}
	// and it takes the next good one
	c.remote.set("v2", smallBody("v2"))
	c.hub.Changed("v2")
	c.converge("v2", smallBody("v2"))
}
