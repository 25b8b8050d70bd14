package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The counter example (examples/counter): GET /total must equal the number of
// GET /hit answered 200, whatever reloads and graceful restarts happened.

// counterTotal is the body of the counter's GET /total.
type counterTotal struct {
	Total   int64
	Workers int // worker lives the agent has heard of
	Live    int // workers that answered its gather
}

// startCounter starts bin/counter, the master of the counter example, in fork
// mode with 2 workers on a free port, unless env says otherwise.
func startCounter(t *testing.T, env ...string) *master {
	t.Helper()
	runDir := t.TempDir()
	base := []string{
		"PATH=" + os.Getenv("PATH"),
		"YOLK_RUN_DIR=" + runDir,
		"YOLK_HTTP_ADDR=127.0.0.1:0", // the master binds it: no window for another to take the port
		"YOLK_WORKERS=2",
		"YOLK_SHUTDOWN_TIMEOUT=5s",
		"YOLK_READY_TIMEOUT=10s",
		"YOLK_LOG_FORMAT=json",
		"COUNTER_REPORT_EVERY=200ms",
		"COUNTER_LOG_EVERY=300ms",
		"GORACE=atexit_sleep_ms=0",
	}
	p := startProcess(t, "counter", append(base, env...))
	return &master{process: p, runDir: runDir, bin: "counter"}
}

// hitLoad is clients that loop on GET /hit until halted, counting the 200s.
type hitLoad struct {
	sent, ok, failed atomic.Int64
	firstErr         atomic.Value // string
	stop             chan struct{}
	halt             func() // stops the clients and waits for them; safe to call again
}

// startHits starts clients looping on base's GET /hit over keep-alive
// connections. The test's cleanup halts them. A response lost by a stopping
// worker would show here: the Go client sends the GET again, and one 200
// counts two hits.
func startHits(t *testing.T, base string, clients int) *hitLoad {
	h := &hitLoad{stop: make(chan struct{})}
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			for {
				select {
				case <-h.stop:
					return
				default:
				}
				h.sent.Add(1)
				h.hit(client, base)
			}
		})
	}
	h.halt = sync.OnceFunc(func() { close(h.stop); wg.Wait() })
	t.Cleanup(h.halt)
	return h
}

// hit sends one GET /hit and counts its answer.
func (h *hitLoad) hit(client *http.Client, base string) {
	code, body, err := get(client, base+"/hit")
	if code == 200 {
		h.ok.Add(1)
	}
	var reply struct {
		Worker string
		Hits   int64
	}
	switch {
	case err != nil:
		err = fmt.Errorf("GET /hit: %w", err)
	case code != 200:
		err = fmt.Errorf("GET /hit = %d %q, want 200", code, body)
	case json.Unmarshal([]byte(body), &reply) != nil || reply.Worker == "" || reply.Hits < 1:
		err = fmt.Errorf("GET /hit = %q, want {worker, hits}", body)
	default:
		return
	}
	h.failed.Add(1)
	h.firstErr.CompareAndSwap(nil, err.Error())
}

// more waits until n more hits than now were answered 200.
func (h *hitLoad) more(t *testing.T, n int64, what string) {
	t.Helper()
	want := h.ok.Load() + n
	eventually(t, 20*time.Second, fmt.Sprintf("%d hits answered %s", n, what), func() bool { return h.ok.Load() >= want })
}

// waitTotal polls base's GET /total until it says want hits and workers worker
// lives, and returns the last answer and how long it took.
func waitTotal(t *testing.T, base string, want int64, workers int) (counterTotal, time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	start := time.Now()
	var got counterTotal
	var last string
	for {
		code, body, err := get(client, base+"/total")
		switch {
		case err != nil:
			last = err.Error()
		case code != 200:
			last = fmt.Sprintf("%d %q", code, body)
		case json.Unmarshal([]byte(body), &got) != nil:
			last = fmt.Sprintf("%q", body)
		case got.Total == want && got.Workers == workers:
			return got, time.Since(start)
		default:
			last = fmt.Sprintf("%+v", got)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("GET /total = %s, want total %d (the 200s of GET /hit) and %d workers", last, want, workers)
		}
		time.Sleep(20 * time.Millisecond) // a poll interval, not a synchronisation
	}
}

// noRace fails the test if p's log shows a data race or a panic.
func noRace(t *testing.T, p *process) {
	t.Helper()
	for _, bad := range []string{"DATA RACE", "panic:"} {
		if strings.Contains(p.logs.String(), bad) {
			t.Errorf("%s's log shows %q", p.cmd.Path, bad)
		}
	}
}

func TestCounterForkMode(t *testing.T) {
	begin := time.Now()
	m := startCounter(t)
	base := m.waitReady(t)

	load := startHits(t, base, 4)
	load.more(t, 100, "before the reloads")
	const reloads = 3
	for i := range reloads {
		if i == 0 {
			if out, err := m.cli(t, "reload"); err != nil {
				t.Fatalf("counter reload: %v\n%s", err, out)
			}
		} else {
			m.cmd.Process.Signal(syscall.SIGHUP)
		}
		m.logs.forget(m.logs.waitFor(t, 30*time.Second, `"msg":"reload done"`))
		load.more(t, 50, fmt.Sprintf("after reload %d", i+1))
	}

	victim := m.status(t).pids("worker")[0]
	if err := syscall.Kill(victim, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 20*time.Second, fmt.Sprintf("worker %d gone and replaced", victim), func() bool {
		if !processGone(victim) {
			return false
		}
		st := m.status(t)
		return st.allReady(2) && !containsInt(st.pids("worker"), victim)
	})
	load.more(t, 50, "after the worker's replacement")
	load.halt()
	if n := load.failed.Load(); n != 0 {
		t.Errorf("%d of %d GET /hit failed; first: %v", n, load.sent.Load(), load.firstErr.Load())
	}

	// every worker that was ready is a worker life the agent has heard of
	lives := m.logs.count(`"msg":"child ready"`, `"role":"worker"`)
	total, settled := waitTotal(t, base, load.ok.Load(), lives)
	for _, name := range []string{"report", "log_total"} {
		m.logs.waitFor(t, 5*time.Second, `"msg":"schedule run"`, `"schedule":"`+name+`"`, `"outcome":"ok"`)
	}
	m.logs.waitFor(t, 5*time.Second, `"msg":"total"`, `"total":`) // log_total's record
	t.Logf("counter, fork mode: %d GET /hit sent by 4 clients, %d answered 200, %d failed; %d reloads and worker %d stopped (replaced in %v); "+
		"GET /total = %d (%d worker lives, %d live) = the 200s, %v after the clients stopped; schedule runs: report %d, log_total %d",
		load.sent.Load(), load.ok.Load(), load.failed.Load(), reloads, victim, took.Round(time.Millisecond),
		total.Total, total.Workers, total.Live, settled.Round(time.Millisecond),
		m.logs.count(`"msg":"schedule run"`, `"schedule":"report"`), m.logs.count(`"msg":"schedule run"`, `"schedule":"log_total"`))

	m.cmd.Process.Signal(syscall.SIGTERM)
	if code := m.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("counter exit code after SIGTERM = %d, want 0", code)
	}
	checkNoLeftovers(t, m.runDir, logPIDs(m.logs.String())) // every child it ever had
	noRace(t, m.process)
	t.Logf("TestCounterForkMode took %v", time.Since(begin).Round(time.Millisecond))
}

func TestCounterExternalMode(t *testing.T) {
	begin := time.Now()
	// no schedule runs: a stopped worker's last hits reach the agent by its BeforeClose hook alone
	x := newExternalOf(t, "COUNTER_REPORT_EVERY=1h", "COUNTER_LOG_EVERY=1h")
	// start runs `counter <role>` as the process called name, with a health socket of its own.
	start := func(role, name string) *process { return x.startArgs(t, "counter", []string{role}, name) }
	master := start("master", "master")
	master.logs.waitFor(t, 20*time.Second, `"msg":"master started"`)
	agent := start("agent", "agent")
	memberID(t, agent, "agent")
	w1, w2 := start("worker", "worker-1"), start("worker", "worker-2")
	w1ID, w2ID := memberID(t, w1, "worker"), memberID(t, w2, "worker")
	eventually(t, 10*time.Second, "counter healthcheck --ready of the master", func() bool {
		code, _ := healthcheck(t, "counter", x.socket("master"), true)
		return code == 0
	})

	base := x.http
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	ok := int64(0)
	byWorker := map[string]int{}
	hits := func(n int) {
		t.Helper()
		for range n {
			code, body, err := get(client, base+"/hit")
			var reply struct{ Worker string }
			if err != nil || code != 200 || json.Unmarshal([]byte(body), &reply) != nil {
				t.Fatalf("GET /hit = %d %q, %v; want 200 {worker, hits}", code, body, err)
			}
			ok++
			byWorker[reply.Worker]++
		}
	}
	hits(300)
	first, _ := waitTotal(t, base, ok, 2) // the agent gathers both workers' counts
	before := byWorker[w1ID]
	hits(100)
	if byWorker[w1ID] == before || byWorker[w2ID] == 0 {
		t.Fatalf("GET /hit answered by %v, want both workers %s and %s, the first after GET /total too", byWorker, w1ID, w2ID)
	}

	w1.cmd.Process.Signal(syscall.SIGTERM) // its BeforeClose hook reports its last count
	if code := w1.wait(t, 15*time.Second); code != 0 {
		t.Errorf("worker exit code after SIGTERM = %d, want 0", code)
	}
	afterStop, _ := waitTotal(t, base, ok, 2)
	hits(100)
	last, settled := waitTotal(t, base, ok, 2)
	t.Logf("counter, external mode: %d GET /hit answered 200 (%v); GET /total = %d after 300 hits, "+
		"%d once %s stopped (%d of its hits since known by its BeforeClose report only; %d live), %d after 100 more hits to %s (settled in %v)",
		ok, byWorker, first.Total, afterStop.Total, w1ID, byWorker[w1ID]-before, afterStop.Live, last.Total, w2ID, settled.Round(time.Millisecond))

	for _, p := range []struct {
		name string
		p    *process
	}{{"worker-2", w2}, {"agent", agent}, {"master", master}} {
		p.p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.p.wait(t, 15*time.Second); code != 0 {
			t.Errorf("%s exit code after SIGTERM = %d, want 0", p.name, code)
		}
	}
	for _, p := range []*process{master, agent, w1, w2} {
		noRace(t, p)
	}
	t.Logf("TestCounterExternalMode took %v", time.Since(begin).Round(time.Millisecond))
}
