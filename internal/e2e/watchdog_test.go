package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The watchdog: a worker alive but stuck is replaced through the rolling path
// within YOLK_HANG_TIMEOUT plus 2 s, its goroutines dumped in the master's log;
// a worker over YOLK_WORKER_MAX_RSS is replaced without a failed request.

const (
	wdHang    = 2 * time.Second // YOLK_HANG_TIMEOUT in these tests
	wdClients = 3
	// wdBound: from the fault to the replacement ready and the stuck worker
	// gone. The target is YOLK_HANG_TIMEOUT plus 2 s; the figures
	// measured against it are logged (go test -v).
	wdBound = wdHang + 2*time.Second
)

// wdResult is one GET of a wdLoad client.
type wdResult struct {
	client     int
	start, end time.Time
	code       int
	worker     string
	err        error
}

// wdLoad is wdClients clients that GET url in a loop, each on a keep-alive
// connection of its own (it stays with the worker that accepted it; a new one
// after an error): each client has at most one request in flight, in one worker.
type wdLoad struct {
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
	mu   sync.Mutex
	res  []wdResult
}

func startWDLoad(t *testing.T, url string) *wdLoad {
	t.Helper()
	l := &wdLoad{stop: make(chan struct{})}
	for i := range wdClients {
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 30 * time.Second}
		l.wg.Go(func() {
			defer c.CloseIdleConnections()
			for {
				select {
				case <-l.stop:
					return
				case <-time.After(5 * time.Millisecond): // holds the rate
				}
				r := wdResult{client: i, start: time.Now()}
				r.code, r.worker, _, _, r.err = get1(c, url)
				r.end = time.Now()
				l.mu.Lock()
				l.res = append(l.res, r)
				l.mu.Unlock()
			}
		})
	}
	t.Cleanup(l.Stop)
	eventually(t, 10*time.Second, "the load running", func() bool { return len(l.results()) > 30 })
	return l
}

func (l *wdLoad) Stop() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

func (l *wdLoad) results() []wdResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.res)
}

// workers returns the worker each client was last answered by.
func (l *wdLoad) workers() map[int]string {
	out := make(map[int]string)
	for _, r := range l.results() {
		if r.err == nil && r.code == http.StatusOK {
			out[r.client] = r.worker
		}
	}
	return out
}

func startWDMaster(t *testing.T, env ...string) (*master, string) {
	t.Helper()
	m := startMaster(t, append([]string{"YOLK_WORKERS=3", "YOLK_HANG_TIMEOUT=" + wdHang.String()}, env...)...)
	return m, m.waitReady(t)
}

// pickVictim picks the worker to make stuck: one on which a client of the
// load is, if another client is on another worker (so that someone keeps
// being answered), else one no client is on.
func pickVictim(t *testing.T, m *master, l *wdLoad) int {
	t.Helper()
	on := l.workers()
	pids := m.status(t).pids("worker")
	for _, pid := range pids {
		id := strconv.Itoa(pid)
		mine, others := 0, 0
		for _, w := range on {
			if w == id {
				mine++
			} else {
				others++
			}
		}
		if mine > 0 && others > 0 {
			return pid
		}
	}
	for _, pid := range pids {
		taken := false
		for _, w := range on {
			taken = taken || w == strconv.Itoa(pid)
		}
		if !taken {
			return pid
		}
	}
	return pids[0]
}

// waitReplaced waits until victim is gone and 3 workers are ready again, and
// returns when the master logged it replaced (the time of its record, not of
// the test's poll, which a loaded machine delays).
func waitReplaced(t *testing.T, m *master, victim int, bound time.Duration) time.Time {
	t.Helper()
	eventually(t, bound, fmt.Sprintf("worker %d replaced", victim), func() bool {
		st := m.status(t)
		return processGone(victim) && st.allReady(3) && !slices.Contains(st.pids("worker"), victim)
	})
	return recordTime(t, m.logs.waitFor(t, 5*time.Second, `"msg":"worker replaced"`, `"pid":`+strconv.Itoa(victim)+`,`))
}

// recordTime is the time of a record of the master's log.
func recordTime(t *testing.T, line string) time.Time {
	t.Helper()
	var rec struct{ Time time.Time }
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Time.IsZero() {
		t.Fatalf("no time in the master's record %q: %v", line, err)
	}
	return rec.Time
}

// checkStuckReplaced checks what a stuck worker's replacement must leave: the
// log says why and holds its goroutine dump, at most one request per client
// that was inside it was lost, the other workers kept answering, and every
// request after the replacement succeeded.
func checkStuckReplaced(t *testing.T, m *master, l *wdLoad, victim int, t0, detected, replaced time.Time) {
	t.Helper()
	id := strconv.Itoa(victim)
	child := `"child":"worker/` + id + `"`
	if n := m.logs.count(child, `"msg":"goroutine `); n == 0 {
		t.Errorf("no goroutine dump of worker %d in the master's log", victim)
	}
	eventually(t, 5*time.Second, "a second of load after the replacement", func() bool {
		n := 0
		for _, r := range l.results() {
			if r.start.After(replaced) {
				n++
			}
		}
		return n > 50
	})
	l.Stop()
	var lost []wdResult
	answeredByOthers := 0
	for _, r := range l.results() {
		ok := r.err == nil && r.code == http.StatusOK
		if !ok {
			lost = append(lost, r)
			if !r.start.Before(replaced) || r.end.Before(t0) {
				t.Errorf("client %d: a request from %s to %s failed (%d, %v): not one inside the stuck worker (stuck at %s, replaced at %s)",
					r.client, r.start.Format("15:04:05.000"), r.end.Format("15:04:05.000"), r.code, r.err, t0.Format("15:04:05.000"), replaced.Format("15:04:05.000"))
			}
			continue
		}
		if r.start.After(t0) && r.end.Before(detected) && r.worker != id {
			answeredByOthers++
		}
	}
	byClient := make(map[int]int)
	for _, r := range lost {
		byClient[r.client]++
	}
	for c, n := range byClient {
		if n > 1 {
			t.Errorf("client %d lost %d requests, want at most the one it had inside the stuck worker", c, n)
		}
	}
	if answeredByOthers == 0 {
		t.Errorf("no request answered by another worker while %d was stuck", victim)
	}
	t.Logf("while worker %d was stuck: %d requests answered by the others; %d lost (inside it)", victim, answeredByOthers, len(lost))
	if testing.Verbose() {
		for _, line := range strings.Split(m.logs.String(), "\n") {
			if strings.Contains(line, "replac") || strings.Contains(line, `"msg":"child ready"`) || strings.Contains(line, "child stopped") {
				t.Log(line)
			}
		}
	}
	st := m.status(t)
	restarts := 0
	for _, c := range st.Children {
		restarts += c.Restarts
	}
	if restarts != 1 {
		t.Errorf("status after the replacement counts %d restarts, want 1: %+v", restarts, st.Children)
	}
}

func TestWatchdogReplacesStoppedWorker(t *testing.T) {
	m, base := startWDMaster(t)
	l := startWDLoad(t, base+"/data")
	victim := pickVictim(t, m, l)

	t0 := time.Now()
	if err := syscall.Kill(victim, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(victim, syscall.SIGCONT) })
	detected := recordTime(t, m.logs.waitFor(t, wdBound, `"pid":`+strconv.Itoa(victim), "answered no heartbeat", "replacing it"))
	replaced := waitReplaced(t, m, victim, wdBound+10*time.Second)
	t.Logf("SIGSTOPped worker %d (YOLK_HANG_TIMEOUT %v): found stuck after %v, replaced after %v",
		victim, wdHang, detected.Sub(t0).Round(time.Millisecond), replaced.Sub(t0).Round(time.Millisecond))
	if d := replaced.Sub(t0); d > wdBound {
		t.Errorf("worker %d replaced %v after its SIGSTOP, want within %v", victim, d.Round(time.Millisecond), wdBound)
	}
	checkStuckReplaced(t, m, l, victim, t0, detected, replaced)
}

func TestWatchdogReplacesBlockedHandler(t *testing.T) {
	m, base := startWDMaster(t)
	l := startWDLoad(t, base+"/data")
	victim := pickVictim(t, m, l)

	// the fault request stays inside the worker: its headers come, its body never
	var t0 time.Time
	for try := 0; ; try++ {
		if try == 100 {
			t.Fatalf("the fault request never reached worker %d", victim)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/_yolk/fault/hang?pid=%d", base, victim), nil)
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			cancel()
			t.Fatalf("fault request: %v", err)
		}
		code := resp.StatusCode
		if code == http.StatusOK {
			t0 = time.Now()
			t.Cleanup(func() { resp.Body.Close(); cancel() })
			break
		}
		resp.Body.Close()
		cancel()
		if code != http.StatusMisdirectedRequest {
			t.Fatalf("fault request: %d, want 200 or 421 (was the worker built with -tags yolkfault?)", code)
		}
	}
	detected := recordTime(t, m.logs.waitFor(t, wdBound, `"pid":`+strconv.Itoa(victim), "is stalled", "replacing it"))
	replaced := waitReplaced(t, m, victim, wdBound+10*time.Second)
	t.Logf("worker %d with a handler blocked for ever (YOLK_HANG_TIMEOUT %v): found stalled after %v, replaced after %v",
		victim, wdHang, detected.Sub(t0).Round(time.Millisecond), replaced.Sub(t0).Round(time.Millisecond))
	if d := replaced.Sub(t0); d > wdBound {
		t.Errorf("worker %d replaced %v after its handler blocked, want within %v", victim, d.Round(time.Millisecond), wdBound)
	}
	checkStuckReplaced(t, m, l, victim, t0, detected, replaced)
}

func TestWatchdogRestartsStoppedAgent(t *testing.T) {
	m, base := startWDMaster(t)
	l := startWDLoad(t, base+"/data")
	st := m.status(t)
	agent, workers := st.pids("agent")[0], st.pids("worker")

	t0 := time.Now()
	if err := syscall.Kill(agent, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(agent, syscall.SIGCONT) })
	detected := recordTime(t, m.logs.waitFor(t, wdBound, `"pid":`+strconv.Itoa(agent), "answered no heartbeat", "restarting it")).Sub(t0)
	eventually(t, wdBound+10*time.Second, "a new agent ready", func() bool {
		st := m.status(t)
		return processGone(agent) && st.allReady(3) && len(st.pids("agent")) == 1 && st.pids("agent")[0] != agent
	})
	t.Logf("SIGSTOPped agent %d: found stuck after %v, a new one ready after %v", agent, detected.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
	if n := m.logs.count(`"child":"agent/`+strconv.Itoa(agent)+`"`, `"msg":"goroutine `); n == 0 {
		t.Errorf("no goroutine dump of agent %d in the master's log", agent)
	}
	if got := m.status(t).pids("worker"); !slices.Equal(got, workers) {
		t.Errorf("workers %v after the agent's restart, want %v: they stay", got, workers)
	}
	l.Stop()
	for _, r := range l.results() {
		if r.err != nil || r.code != http.StatusOK {
			t.Errorf("client %d: a request at %s failed (%d, %v) while the agent was stuck: the workers serve without it",
				r.client, r.start.Format("15:04:05.000"), r.code, r.err)
		}
	}
}

func TestWatchdogReplacesWorkerOverMemoryBudget(t *testing.T) {
	const maxRSS = 256 << 20
	m, base := startWDMaster(t, "YOLK_WORKER_MAX_RSS=256MiB", "YOLK_WORKER_MAX_RSS_FOR=2s")
	l := startWDLoad(t, base+"/data")
	for _, pid := range m.status(t).pids("worker") {
		if r := rss(t, pid); r > maxRSS/2 {
			t.Fatalf("worker %d uses %d MiB at rest: too close to the test's budget of 256MiB", pid, r>>20)
		}
	}
	victim := m.status(t).pids("worker")[0]
	for try := 0; ; try++ {
		if try == 100 {
			t.Fatalf("the fault request never reached worker %d", victim)
		}
		code, _, err := get(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second},
			fmt.Sprintf("%s/_yolk/fault/grow?mib=300&pid=%d", base, victim))
		if err != nil {
			t.Fatalf("fault request: %v", err)
		}
		if code == http.StatusOK {
			break
		}
		if code != http.StatusMisdirectedRequest {
			t.Fatalf("fault request: %d, want 200 or 421 (was the worker built with -tags yolkfault?)", code)
		}
	}
	t0 := time.Now()
	line := m.logs.waitFor(t, 10*time.Second, `"pid":`+strconv.Itoa(victim), "above YOLK_WORKER_MAX_RSS (256.0MiB) for", "replacing it")
	t.Logf("log: %s", line)
	replaced := waitReplaced(t, m, victim, 30*time.Second)
	t.Logf("worker %d grown past YOLK_WORKER_MAX_RSS: replaced %v later (YOLK_WORKER_MAX_RSS_FOR 2s)", victim, replaced.Sub(t0).Round(time.Millisecond))
	eventually(t, 5*time.Second, "load after the replacement", func() bool {
		n := 0
		for _, r := range l.results() {
			if r.start.After(replaced) {
				n++
			}
		}
		return n > 30
	})
	l.Stop()
	res := l.results()
	var failed []string
	for _, r := range res {
		if r.err != nil || r.code != http.StatusOK {
			failed = append(failed, fmt.Sprintf("client %d at %s: %d %v", r.client, r.start.Format("15:04:05.000"), r.code, r.err))
		}
	}
	if len(failed) > 0 {
		t.Errorf("%d of %d requests failed; want 0 through a graceful replacement:\n%s", len(failed), len(res), strings.Join(failed, "\n"))
	}
	if n := m.logs.count(`"child":"worker/`+strconv.Itoa(victim)+`"`, `"msg":"goroutine `); n > 0 {
		t.Errorf("worker %d dumped its goroutines: want a graceful stop (SIGTERM), not SIGQUIT", victim)
	}
	t.Logf("%d requests, none failed", len(res))
}
