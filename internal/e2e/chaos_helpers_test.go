package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// The bounds of the chaos and load tests. Each one is a promise of yolk's plus the
// margin a noisy 2-core box running every binary with -race needs; the figures
// measured against them are logged (go test -v) and listed in RELIABILITY.md.
const (
	// freshBound: from a change at the source, or from the moment the service is
	// whole again after a disruption, to every ready worker serving that version.
	// The push path is the feed event, one conditional GET by the agent and one bus
	// event per worker (measured under -race with load: p50 about 20 ms, the worst
	// seen under 1 s); 3 s is the bound TestRefreshReachesEveryWorker holds too.
	freshBound = 3 * time.Second
	// startBound: from the end of a child's restart backoff (the wait the master
	// logs with the exit) to its replacement ready: exec of a -race binary, bus
	// connect, catch-up from the agent (or the agent warming from a worker), ready
	// event. Measured 0.2 to 1.2 s.
	startBound = 5 * time.Second
	// killWindow: a request can fail at the connection level only if it was in
	// flight in a worker, or on a connection that worker had accepted, when that
	// worker was SIGKILLed. Such a failure is reported at once (the kernel resets
	// the dead process's sockets), so it happens within this window of the kill.
	killWindow = 2 * time.Second
	// fetchTimeout is YOLK_FETCH_TIMEOUT in these tests (startMaster's, newExternal's).
	fetchTimeout = time.Second
	// othersLatency: the slowest request a worker other than a paused one may
	// answer. A request is a fresh connection to the shared port that any running
	// worker accepts; measured under 100 ms at the 99th percentile.
	othersLatency = 2 * time.Second
	// changeEvery is the steady rate of changes at the source in the chaos tests.
	changeEvery = 100 * time.Millisecond
	// loadClients and loadPace: the steady HTTP load (each client sends a request,
	// then waits loadPace): about 4 x 100 requests/s, well below what 2 cores can
	// serve under -race, so the test measures yolk, not an overloaded box.
	loadClients = 4
	loadPace    = 10 * time.Millisecond
)

// soak reports whether the long variants run (YOLK_SOAK=1: make soak).
func soak() bool { return os.Getenv("YOLK_SOAK") == "1" }

// pick returns short in the default run and long in the soak.
func pick[T any](short, long T) T {
	if soak() {
		return long
	}
	return short
}

// ---------------------------------------------------------------------------
// The steady HTTP load.

// result is one GET of the load, as its client saw it.
type result struct {
	start   time.Time
	end     time.Time
	code    int
	worker  string // X-Yolk-Worker
	version string // X-Yolk-Version
	body    string
	err     error // the final error, after the one retry
	// retried is the connection error of a first attempt that was retried (nil if
	// none), and retriedAt when it happened.
	retried   error
	retriedAt time.Time
}

// load runs clients goroutines that GET url in a loop, each pausing pace between
// requests, and records every answer. Odd clients keep connections alive (a
// connection then stays with the worker that accepted it); even ones open a
// connection per request (which whichever worker accepts first takes).
type load struct {
	url     string
	clients []*http.Client
	stop    chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup

	mu  sync.Mutex
	res []result
}

// startLoad starts the load; it is stopped in t.Cleanup if not before.
func startLoad(t *testing.T, url string, clients int, keepAlive bool) *load {
	t.Helper()
	l := &load{url: url, stop: make(chan struct{})}
	for i := range clients {
		tr := &http.Transport{DisableKeepAlives: !keepAlive || i%2 == 0, MaxIdleConnsPerHost: 1}
		// a request stuck in a SIGSTOPped worker takes as long as the pause
		l.clients = append(l.clients, &http.Client{Transport: tr, Timeout: 30 * time.Second})
	}
	for _, c := range l.clients {
		l.wg.Go(func() { l.run(c) })
	}
	t.Cleanup(l.Stop)
	eventually(t, 10*time.Second, "the load running", func() bool { return l.count() > 10*clients })
	return l
}

func (l *load) run(c *http.Client) {
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		r := l.do(c)
		l.mu.Lock()
		l.res = append(l.res, r)
		l.mu.Unlock()
		select {
		case <-l.stop:
			return
		case <-time.After(loadPace): // holds the rate
		}
	}
}

// do sends one GET, and once more if the first attempt failed at the connection
// level: a GET is idempotent, and a client (or proxy) that retries it once on a
// reset connection is how a service behind a shared port is used. The chaos
// tests then require that no request fails after its retry, and that retries
// happen only where a kill explains them.
func (l *load) do(c *http.Client) result {
	r := result{start: time.Now()}
	r.code, r.worker, r.version, r.body, r.err = get1(c, l.url)
	if r.err != nil && connError(r.err) {
		r.retried, r.retriedAt = r.err, time.Now()
		r.code, r.worker, r.version, r.body, r.err = get1(c, l.url)
	}
	r.end = time.Now()
	return r
}

func get1(c *http.Client, url string) (code int, worker, version, body string, err error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Yolk-Worker"), resp.Header.Get("X-Yolk-Version"), string(b), err
}

// connError reports whether err is a connection that was reset or closed
// without an answer: what a client sees of a server process that died. That
// includes net/http's "server closed idle connection" (unexported), which the
// client does not retry itself when the connection was never used: a spare
// connection it dialed, which a worker accepted and then died with.
func connError(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		strings.Contains(err.Error(), "http: server closed idle connection")
}

// Stop stops the load and waits for its clients. Safe to call more than once.
func (l *load) Stop() {
	l.stopped.Do(func() { close(l.stop) })
	l.wg.Wait()
	for _, c := range l.clients {
		c.CloseIdleConnections()
	}
}

func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.res)
}

// results returns a copy of what was recorded so far.
func (l *load) results() []result {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.res)
}

// kill is a SIGKILL the test sent, for attributing connection errors.
type kill struct {
	at   time.Time
	role string
	pids []int
}

// loadCheck is what a load's results must satisfy.
type loadCheck struct {
	kills []kill // connection errors are allowed only right after a worker kill
	// clients is how many requests can be in flight at once: a killed worker can
	// take at most that many down with it.
	clients int
	stream  *changes // to check each answer's value against its version; nil: don't
	// lies are intervals in which the source lied about its version (wrongetag):
	// answers of requests that started in them are not checked against it.
	lies [][2]time.Time
}

// check asserts: every request got a 200 (no 5xx, no 404, no error after the
// retry); a retried connection error happened within killWindow after the
// SIGKILL of a worker, and there were at most clients of them per killed worker;
// each worker's answers never go back to an older version; and each answer's
// value is the one the source held at the version it names. It returns how many
// requests were retried.
func (c loadCheck) check(t *testing.T, res []result) (retried int) {
	t.Helper()
	var failed []result
	killedWorkers := 0
	for _, k := range c.kills {
		if k.role == "worker" {
			killedWorkers += len(k.pids)
		}
	}
	var unexplained []result
	for _, r := range res {
		if r.err != nil || r.code != http.StatusOK {
			failed = append(failed, r)
		}
		if r.retried == nil {
			continue
		}
		retried++
		explained := false
		for _, k := range c.kills {
			if k.role == "worker" && !r.retriedAt.Before(k.at) && r.retriedAt.Sub(k.at) < killWindow {
				explained = true
			}
		}
		if !explained {
			unexplained = append(unexplained, r)
		}
	}
	if len(failed) > 0 {
		t.Errorf("%d of %d requests failed (after one retry on a reset connection); first ones:\n%s", len(failed), len(res), describe(failed))
	}
	if len(unexplained) > 0 {
		t.Errorf("%d connection errors not within %v after a worker was killed (kills at %s):\n%s",
			len(unexplained), killWindow, killTimes(c.kills), describe(unexplained))
	}
	if max := c.clients * killedWorkers; retried > max {
		t.Errorf("%d requests retried after a connection error, want at most %d (%d clients x %d workers killed)", retried, max, c.clients, killedWorkers)
	}
	checkMonotonic(t, res)
	if c.stream != nil {
		c.checkValues(t, res)
	}
	return retried
}

func describe(rs []result) string {
	var b strings.Builder
	for i, r := range rs {
		if i == 5 {
			fmt.Fprintf(&b, "\t... and %d more\n", len(rs)-5)
			break
		}
		fmt.Fprintf(&b, "\t%s +%v: code %d worker %q version %q err %v (first attempt: %v)\n",
			r.start.Format("15:04:05.000"), r.end.Sub(r.start).Round(time.Millisecond), r.code, r.worker, r.version, r.err, r.retried)
	}
	return b.String()
}

func killTimes(ks []kill) string {
	var s []string
	for _, k := range ks {
		s = append(s, fmt.Sprintf("%s %s %v", k.at.Format("15:04:05.000"), k.role, k.pids))
	}
	return strings.Join(s, ", ")
}

// checkMonotonic asserts that no worker serves an older version after it served a
// newer one: a request that started after another one ended, both answered by one
// worker, names a version at least as new.
func checkMonotonic(t *testing.T, res []result) {
	t.Helper()
	byWorker := make(map[string][]result)
	for _, r := range res {
		if r.err == nil && r.code == http.StatusOK {
			byWorker[r.worker] = append(byWorker[r.worker], r)
		}
	}
	for w, rs := range byWorker {
		ended := slices.Clone(rs)
		sort.Slice(ended, func(i, j int) bool { return ended[i].end.Before(ended[j].end) })
		best := make([]uint64, len(ended)) // best[i]: the newest version of ended[:i+1]
		for i, r := range ended {
			best[i] = versionNum(r.version)
			if i > 0 {
				best[i] = max(best[i], best[i-1])
			}
		}
		for _, r := range rs {
			n := sort.Search(len(ended), func(i int) bool { return !ended[i].end.Before(r.start) })
			if n > 0 && versionNum(r.version) < best[n-1] {
				t.Errorf("worker %s went back: served version %s at %s after it had served %d",
					w, r.version, r.start.Format("15:04:05.000"), best[n-1])
				return
			}
		}
	}
}

// checkValues asserts that each answer is the value the source held at the
// version the answer names.
func (c loadCheck) checkValues(t *testing.T, res []result) {
	t.Helper()
	bad := 0
	for _, r := range res {
		if r.err != nil || r.code != http.StatusOK || c.lying(r.start) {
			continue
		}
		want, ok := c.stream.valueAt(versionNum(r.version))
		if !ok || strings.TrimSpace(r.body) != strconv.Itoa(want) {
			if bad++; bad <= 5 {
				t.Errorf("worker %s served %s=%s at version %s, want %d (the source's value at that version)",
					r.worker, c.stream.key, strings.TrimSpace(r.body), r.version, want)
			}
		}
	}
	if bad > 5 {
		t.Errorf("... %d answers in all with a value that is not the source's at their version", bad)
	}
}

func (c loadCheck) lying(at time.Time) bool {
	for _, iv := range c.lies {
		if !at.Before(iv[0]) && at.Before(iv[1]) {
			return true
		}
	}
	return false
}

// latencies returns the durations of rs, sorted.
func latencies(rs []result) []time.Duration {
	d := make([]time.Duration, 0, len(rs))
	for _, r := range rs {
		d = append(d, r.end.Sub(r.start))
	}
	slices.Sort(d)
	return d
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[int(q*float64(len(d)-1))]
}

func versionNum(v string) uint64 {
	n, _ := strconv.ParseUint(v, 10, 64)
	return n
}

// ---------------------------------------------------------------------------
// The steady stream of changes at the source.

// changes PUTs key at the source every `every`, with the values 1, 2, 3... and
// remembers the version each PUT made. A PUT is sent when it is due, whether or
// not the ones before have been answered (at most maxInFlight at once), so a slow
// answer does not lower the rate.
type changes struct {
	url     string
	key     string
	publish func(version string) // also announce each version here (a feed the test owns)
	client  *http.Client
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once

	mu   sync.Mutex
	puts []put // in version order
	errs []error
}

type put struct {
	version uint64
	value   int
	at      time.Time
}

const maxInFlight = 8

// startChanges makes the first change at once and the next ones every `every`
// until Stop, or until limit changes (0: no limit) have been made.
func startChanges(t *testing.T, src *source, key string, every time.Duration, limit int, publish func(string)) *changes {
	t.Helper()
	c := &changes{
		url: src.url + "/data/" + key, key: key, publish: publish,
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: maxInFlight}},
		stop:   make(chan struct{}), done: make(chan struct{}),
	}
	if err := c.put(1); err != nil {
		t.Fatalf("first change at the source: %v", err)
	}
	go func() {
		defer close(c.done)
		var wg sync.WaitGroup
		defer wg.Wait()
		slots := make(chan struct{}, maxInFlight)
		begin := time.Now()
		for i := 2; limit <= 0 || i <= limit; i++ {
			// The i-th change is due at (i-1) x every.
			due := time.NewTimer(time.Until(begin.Add(time.Duration(i-1) * every)))
			select {
			case <-c.stop:
				due.Stop()
				return
			case <-due.C:
			}
			slots <- struct{}{}
			wg.Go(func() {
				defer func() { <-slots }()
				if err := c.put(i); err != nil {
					c.mu.Lock()
					c.errs = append(c.errs, err)
					c.mu.Unlock()
				}
			})
		}
	}()
	t.Cleanup(func() { c.Stop(t) })
	return c
}

func (c *changes) put(value int) error {
	req, _ := http.NewRequest(http.MethodPut, c.url, strings.NewReader(strconv.Itoa(value)))
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("PUT %s: %w", c.key, err)
	}
	defer resp.Body.Close()
	var r struct{ Version string }
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PUT %s = %d, %v", c.key, resp.StatusCode, err)
	}
	p := put{version: versionNum(r.Version), value: value, at: time.Now()}
	c.mu.Lock()
	i := sort.Search(len(c.puts), func(i int) bool { return c.puts[i].version > p.version })
	c.puts = slices.Insert(c.puts, i, p)
	c.mu.Unlock()
	if c.publish != nil {
		c.publish(r.Version)
	}
	return nil
}

// Stop stops the stream, waits for it, and fails t if a change failed. Safe to
// call more than once.
func (c *changes) Stop(t *testing.T) {
	t.Helper()
	c.once.Do(func() {
		close(c.stop)
		<-c.done
		c.client.CloseIdleConnections()
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(c.errs) > 0 {
			t.Errorf("%d changes at the source failed; first: %v", len(c.errs), c.errs[0])
		}
	})
}

// wait waits until the stream has made its limit of changes.
func (c *changes) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(timeout):
		t.Fatalf("%d changes made after %v, the stream has not finished", c.count(), timeout)
	}
}

// latest returns the version of the last change made.
func (c *changes) latest() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.puts[len(c.puts)-1].version
}

func (c *changes) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.puts)
}

// span returns how long the stream took from its first change to its last.
func (c *changes) span() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	first, last := c.puts[0].at, c.puts[0].at
	for _, p := range c.puts {
		if p.at.After(last) {
			last = p.at
		}
	}
	return last.Sub(first)
}

// first returns the first change made.
func (c *changes) first() put {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.puts[0]
}

// valueAt returns the key's value at version v: the value of the last change at
// or before v.
func (c *changes) valueAt(v uint64) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := sort.Search(len(c.puts), func(i int) bool { return c.puts[i].version > v })
	if i == 0 {
		return 0, false
	}
	return c.puts[i-1].value, true
}

// ---------------------------------------------------------------------------
// Processes and goroutines.

// workerMetrics GETs /metrics through the shared port until worker id answers.
func workerMetrics(t *testing.T, base, id string) string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var body string
	eventually(t, 10*time.Second, "worker "+id+" answering /metrics", func() bool {
		code, worker, _, b, err := get1(client, base+"/metrics")
		if err == nil && code == http.StatusOK && worker == id {
			body = b
			return true
		}
		return false
	})
	return body
}

// metricValue returns the value of the first sample in a Prometheus text
// exposition whose line starts with series (a name, or a name and its first
// labels: `yolk_bus_messages_total{event="refresh"`, which matches with or
// without more labels after them), and whether there is one.
func metricValue(t *testing.T, exposition, series string) (float64, bool) {
	t.Helper()
	for line := range strings.SplitSeq(exposition, "\n") {
		if rest, ok := strings.CutPrefix(line, series); ok && rest != "" && strings.ContainsRune(" {,}", rune(rest[0])) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return v, true
		}
	}
	return 0, false
}

// rss returns the resident memory of pid in bytes.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("RSS of %d: %v", pid, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("RSS of %d: %q", pid, line)
			}
			return kb << 10
		}
	}
	t.Fatalf("RSS of %d: no VmRSS", pid)
	return 0
}

// checkGoroutines fails t if the test process has more goroutines once every
// cleanup has run than when it was called: the test's own parts (load clients,
// log readers, bus connections, HTTP transports) must all have ended. Call it
// first, so that its cleanup runs last.
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				var buf bytes.Buffer
				pprof.Lookup("goroutine").WriteTo(&buf, 1)
				t.Errorf("goroutines: %d after the test, %d before; they are:\n%s", runtime.NumGoroutine(), before, buf.String())
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// ---------------------------------------------------------------------------
// A change feed broker the test owns, to take it away and bring it back.

// feedBroker is a NATS server on a fixed loopback port standing for the source's
// change feed broker (the source runs with SOURCE_NATS_ADDR=off): the change
// stream announces each version on it as the source would.
type feedBroker struct {
	port int

	mu  sync.Mutex
	srv *server.Server
	nc  *nats.Conn
}

func startFeedBroker(t *testing.T) *feedBroker {
	t.Helper()
	f := &feedBroker{port: freePort(t)}
	f.start(t)
	t.Cleanup(f.stop)
	return f
}

func (f *feedBroker) url() string { return "nats://127.0.0.1:" + strconv.Itoa(f.port) }

func (f *feedBroker) start(t *testing.T) {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: f.port, NoSigs: true, NoSystemAccount: true})
	if err != nil {
		t.Fatalf("feed broker: %v", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		t.Fatalf("feed broker not listening on %d", f.port)
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv))
	if err != nil {
		srv.Shutdown()
		t.Fatalf("feed broker: connect: %v", err)
	}
	f.mu.Lock()
	f.srv, f.nc = srv, nc
	f.mu.Unlock()
}

// stop shuts the broker down; publishes are dropped until start.
func (f *feedBroker) stop() {
	f.mu.Lock()
	srv, nc := f.srv, f.nc
	f.srv, f.nc = nil, nil
	f.mu.Unlock()
	if srv == nil {
		return
	}
	nc.Close()
	srv.Shutdown()
	srv.WaitForShutdown()
}

// publish announces version as the source does: {"version":"..."} on source.changed.
func (f *feedBroker) publish(version string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.nc != nil {
		f.nc.Publish("source.changed", []byte(`{"version":"`+version+`"}`))
	}
}

// ---------------------------------------------------------------------------
// Logs.

// count returns how many lines contain every one of subs.
func (l *logs) count(subs ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if containsAll(line, subs) {
			n++
		}
	}
	return n
}

// waitMore waits until more than n lines contain every one of subs.
func (l *logs) waitMore(t *testing.T, timeout time.Duration, n int, subs ...string) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		l.mu.Lock()
		got := 0
		for _, line := range l.lines {
			if containsAll(line, subs) {
				got++
			}
		}
		ch := l.changed
		l.mu.Unlock()
		if got > n {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no new log line with %q within %v (%d before); log:\n%s", subs, timeout, n, l)
		}
	}
}
