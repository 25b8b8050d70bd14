package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The chaos tests: real processes under a steady HTTP load and a steady stream of
// changes at the source, disrupted one way or another. After each disruption every
// worker must serve the source's latest version within a bound (see the constants
// in chaos_helpers_test.go), no request may fail that a healthy worker could have
// answered, nothing may leak, and the logs must say what happened. make soak runs
// the long variants (YOLK_SOAK=1).

// TestChaosKill SIGKILLs a worker, then the agent, then all the workers but one at
// once, and repeats the cycle (3 times; 20 in the soak).
//
// Requests: in fork mode the master holds the shared listening socket, so a
// connection not yet accepted survives any worker's death; only a request in
// flight in the killed worker (or on a keep-alive connection it had accepted) can
// fail. The load retries such a GET once, as a client of any service behind a
// shared port does, and the test then requires zero failures, and no more
// retries than could have been in flight in the killed workers, each within
// killWindow of a kill.
func TestChaosKill(t *testing.T) {
	cycles := pick(3, 20)
	r := startRig(t, rigOptions{workers: 3, env: []string{"YOLK_PULL_INTERVAL=1s", "YOLK_FORCE_INTERVAL=5s"}})
	var restart, fresh = map[string][]time.Duration{}, map[string][]time.Duration{}
	for i := range cycles {
		t.Logf("cycle %d of %d", i+1, cycles)
		for _, step := range []struct {
			role string
			n    int
		}{{"worker", 1}, {"agent", 1}, {"worker", 2}} {
			rs, f := r.killChildren(t, step.role, step.n)
			name := fmt.Sprintf("%s x%d", step.role, step.n)
			restart[name] = append(restart[name], rs)
			fresh[name] = append(fresh[name], f)
		}
	}
	r.finish(t, loadCheck{})
	for _, name := range []string{"worker x1", "agent x1", "worker x2"} {
		rs, f := slices.Sorted(slices.Values(restart[name])), slices.Sorted(slices.Values(fresh[name]))
		t.Logf("kill %s, %d times: replaced in p50 %v max %v (backoff included); every worker fresh after that in p50 %v max %v",
			name, len(rs), quantile(rs, .5).Round(time.Millisecond), quantile(rs, 1).Round(time.Millisecond),
			quantile(f, .5).Round(time.Millisecond), quantile(f, 1).Round(time.Millisecond))
	}
}

// TestChaosKillMaster SIGKILLs a fork-mode master under load: no child may
// survive it (the lifeline pipe and Pdeathsig), and every request answered before
// the kill was right.
func TestChaosKillMaster(t *testing.T) {
	r := startRig(t, rigOptions{workers: 3})
	eventually(t, 10*time.Second, "a second of load", func() bool { return r.load.count() > 200 })
	r.status(t)
	r.ctl.Close()
	for pid, role := range logPIDs(r.m.logs.String()) {
		r.pids[pid] = role
	}
	at := time.Now()
	r.m.cmd.Process.Signal(syscall.SIGKILL)
	r.m.wait(t, 5*time.Second)
	took := checkNoLeftovers(t, r.m.runDir, r.pids)
	t.Logf("master SIGKILLed under load: its %d children gone %v later", len(r.pids), took.Round(time.Millisecond))
	r.changes.Stop(t)
	r.load.Stop()
	var before []result
	for _, res := range r.load.results() {
		if res.end.Before(at) {
			before = append(before, res)
		}
	}
	loadCheck{clients: loadClients, stream: r.changes}.check(t, before)
}

// TestChaosPause SIGSTOPs a worker (3 s; 10 s in the soak), then SIGCONTs it. The
// other workers keep serving with bounded latency and keep receiving every change
// (the bus does not stall behind the stopped one), and the paused one catches up
// once resumed.
//
// The load opens a connection per request: the kernel queues it on the shared
// socket and a running worker accepts it, so only requests the paused worker had
// already accepted when it stopped (at most one per client) wait for it. (A
// keep-alive connection that worker accepted earlier would wait for it too:
// that is what pausing a server process means, and no test of ours can change it.)
func TestChaosPause(t *testing.T) {
	pause := pick(3*time.Second, 10*time.Second)
	// the watchdog would replace a worker paused for YOLK_HANG_TIMEOUT (10s, the
	// soak's pause): this test is about the bus and the others while it is away
	r := startRig(t, rigOptions{workers: 3, fresh: true, env: []string{"YOLK_HANG_TIMEOUT=0"}})
	var victim int
	for _, pid := range r.status(t).pids("worker") {
		if pid != r.survivor {
			victim = pid
		}
	}
	victimID := strconv.Itoa(victim)
	r.waitFresh(t, r.changes.latest(), freshBound)

	t0 := time.Now()
	if err := syscall.Kill(victim, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(victim, syscall.SIGCONT) })
	// Every half second of the pause, the latest change reaches the other workers.
	var worstLag time.Duration
	checks := 0
	for time.Since(t0) < pause {
		v := r.changes.latest()
		start := time.Now()
		eventually(t, freshBound, fmt.Sprintf("the workers other than the paused %d on version %d", victim, v), func() bool {
			return freshIn(r.status(t), r.workers-1, v, []int{victim})
		})
		worstLag = max(worstLag, time.Since(start))
		checks++
		time.Sleep(min(500*time.Millisecond, max(0, pause-time.Since(t0)))) // paces the checks
	}
	t1 := time.Now()
	if err := syscall.Kill(victim, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	v := r.changes.latest()
	// Resumed, the worker handles the refresh events queued for it in order, and
	// installs each: one per change made during the pause (about 20 ms each under
	// -race on a busy box), hence half the pause on top of freshBound.
	caughtUp := r.waitFresh(t, v, freshBound+pause/2)
	t.Logf("worker %d paused %v: the others took at most %v to get each change (%d checks); resumed, it caught up with version %d in %v",
		victim, t1.Sub(t0).Round(time.Millisecond), worstLag.Round(time.Millisecond), checks, v, caughtUp.Round(time.Millisecond))

	// What the bus did with the paused worker: nats-server may disconnect a
	// consumer that stopped reading as slow; it must then reconnect and catch up
	// (it did, above). Either way the logs say so.
	log := r.m.logs.String()
	child := `"child":"worker/` + victimID + `"`
	disconnected := r.m.logs.count(child, "bus: disconnected")
	if disconnected > 0 && r.m.logs.count(child, "bus: reconnected") == 0 {
		t.Errorf("the paused worker was disconnected and never reconnected:\n%s", log)
	}
	t.Logf("the paused worker was disconnected from the bus %d times during the pause", disconnected)

	res := r.finish(t, loadCheck{})
	var others, stuck []result
	for _, x := range res {
		if x.start.Before(t0) && x.end.Before(t0) || !x.start.Before(t1) {
			continue
		}
		if x.worker == victimID {
			stuck = append(stuck, x)
		} else {
			others = append(others, x)
		}
	}
	lat := latencies(others)
	t.Logf("during the pause: %d requests answered by the other workers, p50 %v p99 %v max %v; %d waited for the paused one",
		len(others), quantile(lat, .5).Round(time.Microsecond), quantile(lat, .99).Round(time.Microsecond), quantile(lat, 1).Round(time.Millisecond), len(stuck))
	if len(others) == 0 {
		t.Errorf("no request answered during the pause")
	}
	if worst := quantile(lat, 1); worst > othersLatency {
		t.Errorf("a request answered by another worker during the pause took %v, want at most %v", worst, othersLatency)
	}
	if len(stuck) > loadClients {
		t.Errorf("%d requests waited for the paused worker, want at most %d (one in flight per client when it stopped):\n%s", len(stuck), loadClients, describe(stuck))
	}
	for _, x := range stuck {
		if x.start.After(t0.Add(100 * time.Millisecond)) {
			t.Errorf("a request that started %v into the pause was answered by the paused worker:\n%s", x.start.Sub(t0), describe([]result{x}))
		}
	}
}

// TestChaosSourceFaults makes the source misbehave under load, one fault at a time
// (3 s each; 10 s in the soak): a 500, a hang past the fetch timeout, invalid
// JSON, a truncated body, a body larger than the cache's limit (32 MiB, the
// source sends 64), a wrong ETag. Meanwhile the workers keep serving the last good
// data with no error, the agent's log names the fault, and the agent retries with
// backoff (a change every 100 ms does not make it read a failing source every
// 100 ms); once the fault clears, every worker is on the latest version within
// faultRecovery.
func TestChaosSourceFaults(t *testing.T) {
	hold := pick(3*time.Second, 10*time.Second)
	r := startRig(t, rigOptions{workers: 2, env: []string{"YOLK_PULL_INTERVAL=1s", "YOLK_FORCE_INTERVAL=3s"}})
	var lies [][2]time.Time
	type window struct {
		mode     string
		from, to time.Time
		good     uint64
	}
	var faults []window
	for _, f := range []struct {
		mode string
		says []string // the agent's log names the fault with one of these
	}{
		{"error500", []string{"500 Internal Server Error"}},
		{"hang", []string{"no complete answer within 1s"}},
		{"badjson", []string{"invalid character"}},
		{"truncated", []string{"unexpected EOF"}},
		// The body is refused at the 32 MiB limit, or, when the source under -race
		// on a busy box streams its 64 MiB slower than 32 MiB a second, cut by the
		// fetch timeout first (cache/source_test.go tests the limit itself). Either
		// way no part of it is kept.
		{"huge", []string{"exceeds the limit of 33554432", "no complete answer within 1s"}},
		{"wrongetag", nil}, // a lie no reader can see: nothing fails, nothing to log
	} {
		r.waitFresh(t, r.changes.latest(), freshBound)
		fetches := r.m.src.stats(t).Fetches
		tf := time.Now()
		good := r.changes.latest() + 1 // a change in flight may land just before the fault
		r.m.src.fault(t, f.mode)
		if f.says != nil {
			failures := r.m.logs.count(`"msg":"remote source failed`)
			r.m.logs.waitMore(t, hold+fetchTimeout, failures, `"msg":"remote source failed`, `"child":"agent/`)
			eventually(t, hold+fetchTimeout, f.mode+" named in the agent's log", func() bool {
				for _, says := range f.says {
					if r.m.logs.count(`"msg":"remote source failed`, `"child":"agent/`, says) > 0 {
						return true
					}
				}
				return false
			})
		}
		time.Sleep(time.Until(tf.Add(hold))) // the fault's length
		tc := time.Now()
		r.m.src.fault(t, "none")
		reads := r.m.src.stats(t).Fetches - fetches
		v := r.changes.latest()
		took := r.waitFresh(t, v+1, faultRecovery(hold)) // the first change made after the fault cleared
		t.Logf("%s for %v: the agent read the source %d times meanwhile; every worker on the latest version %v after it cleared",
			f.mode, tc.Sub(tf).Round(time.Millisecond), reads, took.Round(time.Millisecond))
		if limit := maxReads(hold); f.mode != "wrongetag" && reads > limit {
			t.Errorf("%s: %d reads of the failing source in %v, want at most %d (a retry backoff from %v doubling)", f.mode, reads, hold, limit, minRetry)
		}
		if f.mode == "wrongetag" {
			lies = append(lies, [2]time.Time{tf, time.Now()})
		} else {
			faults = append(faults, window{f.mode, tf, tc, good})
		}
	}
	res := r.finish(t, loadCheck{lies: lies})
	// During each fault the workers served the last good data: no version newer than
	// the one before it (the fault really stopped the refreshes), and (checked by
	// finish) no error and no value other than the source's at that version.
	total := 0
	for _, w := range faults {
		settled := w.from.Add(fetchTimeout + time.Second) // a read begun before the fault ends by then
		n := 0
		for _, x := range res {
			if x.start.After(settled) && x.end.Before(w.to) {
				n++
				if versionNum(x.version) > w.good {
					t.Errorf("%s: worker %s served version %s during the fault, newer than the last good %d", w.mode, x.worker, x.version, w.good)
					break
				}
			}
		}
		total += n
		t.Logf("%s: %d requests answered in the settled fault, none newer than the last good version %d", w.mode, n, w.good)
	}
	if total == 0 {
		t.Errorf("no request answered during the faults: nothing checked")
	}
}

// TestChaosFeedBroker takes the source's change feed broker away under load and
// brings it back (once; 3 times in the soak), with push the only refresh (no pull,
// no force): meanwhile the workers serve the last good data with no error; when
// the feed is back the agent resyncs (a full fetch: events were lost) and every
// worker is on the latest version within freshBound plus the feed's reconnect wait.
func TestChaosFeedBroker(t *testing.T) {
	hold := pick(3*time.Second, 10*time.Second)
	feed := startFeedBroker(t)
	r := startRig(t, rigOptions{
		workers: 2,
		srcEnv:  []string{"SOURCE_NATS_ADDR=off"}, // the test's broker stands in for it
		env:     []string{"YOLK_PUSH_URL=" + feed.url(), "YOLK_PULL_INTERVAL=0", "YOLK_FORCE_INTERVAL=0"},
		publish: feed.publish,
	})
	const reconnectWait = 250*time.Millisecond + time.Second // the agent's feed ReconnectWait, with jitter and a dial
	var outages [][2]time.Time
	var goods []uint64
	for range pick(1, 3) {
		r.waitFresh(t, r.changes.latest(), freshBound)
		down, back := r.m.logs.count("change feed disconnected"), r.m.logs.count("change feed reconnected")
		t0 := time.Now()
		good := r.changes.latest() + 1
		feed.stop()
		r.m.logs.waitMore(t, 5*time.Second, down, `"child":"agent/`, "change feed disconnected")
		time.Sleep(time.Until(t0.Add(hold))) // the outage's length
		t1 := time.Now()
		missed := r.changes.latest() - good
		feed.start(t)
		r.m.logs.waitMore(t, 10*time.Second, back, `"child":"agent/`, "change feed reconnected")
		r.waitFresh(t, r.changes.latest(), freshBound+reconnectWait)
		t.Logf("feed broker away %v (%d changes not announced): every worker on the latest version %v after it came back",
			t1.Sub(t0).Round(time.Millisecond), missed, time.Since(t1).Round(time.Millisecond))
		outages = append(outages, [2]time.Time{t0, t1})
		goods = append(goods, good)
	}
	res := r.finish(t, loadCheck{})
	for i, o := range outages {
		for _, x := range res {
			// with push the only refresh, nothing newer than the last good version
			// can arrive during the outage: it really was one
			if x.start.After(o[0].Add(time.Second)) && x.end.Before(o[1]) && versionNum(x.version) > goods[i] {
				t.Errorf("worker %s served version %s during the feed outage, newer than the last announced %d", x.worker, x.version, goods[i])
				break
			}
		}
	}
}

// TestChaosExternalMasterRestart SIGKILLs the master of external mode under load
// and starts a new one 2 s later (once; 3 times, 5 s down, in the soak), while the
// agent and the workers keep running: they keep serving meanwhile (no request
// fails: no worker died), reconnect, rejoin, and changes made while the master was
// down reach every worker.
func TestChaosExternalMasterRestart(t *testing.T) {
	checkGoroutines(t)
	down := pick(2*time.Second, 5*time.Second)
	x := newExternal(t)
	master := x.startMaster(t)
	agent, agentID := x.startMember(t, "agent", "agent")
	w1, id1 := x.startMember(t, "worker", "worker-1")
	w2, id2 := x.startMember(t, "worker", "worker-2")
	workers := []*process{w1, w2}
	ids := []string{id1, id2}
	everyone := map[string]string{agentID: "agent", id1: "worker", id2: "worker"}
	ch := startChanges(t, x.src, "chaos", changeEvery, 0, nil)
	waitServed(t, x.http, "/data/chaos", ids, ch.first().version, freshBound)
	ld := startLoad(t, x.http+"/data/chaos", loadClients, true)

	for i := range pick(1, 3) {
		members := append([]*process{agent}, workers...)
		lost, back := make([]int, len(members)), make([]int, len(members))
		for j, p := range members {
			lost[j], back[j] = p.logs.count("bus: disconnected"), p.logs.count("bus: reconnected")
		}
		before := ch.latest()
		master.cmd.Process.Signal(syscall.SIGKILL)
		master.wait(t, 5*time.Second)
		for j, p := range members { // each one says it lost the bus
			p.logs.waitMore(t, 5*time.Second, lost[j], "bus: disconnected")
		}
		time.Sleep(down) // the master's absence
		if ch.latest() <= before {
			t.Fatalf("no change made while the master was down")
		}
		master = x.startMaster(t)
		rejoined := eventually(t, 10*time.Second, "the agent and both workers back in master status", func() bool {
			_, ms := x.status(t)
			return hasExactly(ms, everyone)
		})
		for j, p := range members { // and that it is back
			p.logs.waitMore(t, 5*time.Second, back[j], "bus: reconnected")
		}
		for id, role := range everyone { // the new master says who joined it
			master.logs.waitFor(t, 5*time.Second, `"msg":"member ready"`, `"role":"`+role+`"`, `"member":"`+id+`"`)
		}
		v := ch.latest()
		fresh := waitServed(t, x.http, "/data/chaos", ids, v, freshBound)
		t.Logf("restart %d: master down %v; every member back %v after the new one started; every worker on version %d (%d changes made meanwhile) %v after that",
			i+1, down, rejoined.Round(time.Millisecond), v, v-before, fresh.Round(time.Millisecond))
	}
	ch.Stop(t)
	ld.Stop()
	res := ld.results()
	if retried := (loadCheck{clients: loadClients, stream: ch}).check(t, res); retried > 0 {
		t.Errorf("%d requests met a connection error, want none: no worker died", retried)
	}
	lat := latencies(res)
	t.Logf("load: %d requests, 0 failed; latency p50 %v p99 %v max %v", len(res),
		quantile(lat, .5).Round(time.Microsecond), quantile(lat, .99).Round(time.Microsecond), quantile(lat, 1).Round(time.Millisecond))

	pids := map[int]string{}
	for _, p := range append([]*process{agent, master}, workers...) {
		pids[p.cmd.Process.Pid] = p.cmd.Path
	}
	for _, p := range append(append([]*process{}, workers...), agent, master) {
		p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.wait(t, 15*time.Second); code != 0 {
			t.Errorf("%s exit code after SIGTERM = %d, want 0", p.cmd.Path, code)
		}
	}
	checkNoLeftovers(t, envValue(x.env, "YOLK_RUN_DIR"), pids)
	for _, p := range x.procs {
		checkLogs(t, p.cmd.Path, p.logs.String())
	}
}

// minRetry is the hub's first retry delay after a failed read (cache.minRetry).
const minRetry = 500 * time.Millisecond

// maxRetry is the hub's longest retry delay (cache.maxRetry).
const maxRetry = 5 * time.Second

// faultRecovery bounds the time from a source fault of length hold clearing to
// every worker on the latest version. The agent retries a failing source after
// minRetry, doubling (at most maxRetry), so the retry pending when the fault clears
// comes at most about as long after as the fault lasted (each wait is up to a fifth
// shorter, hence 1.25); a read in flight then (a hang) ends within fetchTimeout
// and doubles the wait once more. Then one read and freshBound.
func faultRecovery(hold time.Duration) time.Duration {
	return min(2*(hold+fetchTimeout)+minRetry, maxRetry) + fetchTimeout + freshBound
}

// maxReads is how many times the agent may read a source that fails for hold:
// its retries come after minRetry (at least 0.8 of it), then twice that, and so on
// up to maxRetry,
// plus the read the first change after the fault starts and one in flight.
func maxReads(hold time.Duration) int {
	n, wait := 2, minRetry*4/5
	for elapsed := time.Duration(0); elapsed < hold; wait = min(2*wait, maxRetry*4/5) {
		elapsed += wait
		n++
	}
	return n
}

// waitServed GETs base+path through the shared port until each worker of ids
// has answered with version v or newer, and returns how long that took.
func waitServed(t *testing.T, base, path string, ids []string, v uint64, bound time.Duration) time.Duration {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	seen := map[string]string{}
	start := time.Now()
	for {
		code, worker, version, _, err := get1(client, base+path)
		if err == nil && code == http.StatusOK && versionNum(version) >= v {
			seen[worker] = version
		}
		done := true
		for _, id := range ids {
			if _, ok := seen[id]; !ok {
				done = false
			}
		}
		if done {
			return time.Since(start)
		}
		if time.Since(start) > bound {
			t.Fatalf("not every worker of %v served version %d or newer within %v: fresh ones %v", ids, v, bound, seen)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// envValue returns the value of key in env (the last one wins).
func envValue(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if val, ok := strings.CutPrefix(kv, key+"="); ok {
			v = val
		}
	}
	return v
}
