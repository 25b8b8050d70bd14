package e2e

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/bustest"
)

// A fork-mode master under load: the rig of the chaos tests.

// rig is a source, a fork-mode master with its agent and workers, a control
// connection to the master's bus (what `master status` uses, without starting a
// process for each look), a stream of changes and a steady HTTP load.
type rig struct {
	m       *master
	base    string
	workers int
	ctl     *bus.Conn
	changes *changes
	load    *load

	survivor int // a worker no chaos test kills: its goroutines and memory are watched
	before   workerUsage
	kills    []kill
	pids     map[int]string // every child pid seen, with its role
}

// rigOptions configure startRig.
type rigOptions struct {
	workers int      // YOLK_WORKERS
	srcEnv  []string // added to the source's environment
	env     []string // added to the master's environment
	// publish, if not nil, announces each change (a feed the test owns).
	publish func(version string)
	// fresh: the load opens a connection per request (else half its clients keep
	// connections alive).
	fresh bool
	// every and limit: the stream of changes (default: every changeEvery, until
	// finish).
	every time.Duration
	limit int
}

// startRig starts a rig under load and waits until every worker serves the first
// change.
func startRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	checkGoroutines(t)
	src := startSource(t, o.srcEnv...)
	m := startMasterWith(t, src, append([]string{"YOLK_WORKERS=" + strconv.Itoa(o.workers)}, o.env...)...)
	r := &rig{m: m, base: m.waitReady(t), workers: o.workers, pids: make(map[int]string)}
	r.ctl = dialControl(t, m.runDir)
	r.changes = startChanges(t, src, "chaos", cmp.Or(o.every, changeEvery), o.limit, o.publish)
	r.waitFresh(t, r.changes.first().version, freshBound)
	r.survivor = r.status(t).pids("worker")[0]
	r.before = r.usage(t, r.survivor)
	r.load = startLoad(t, r.base+"/data/chaos", loadClients, !o.fresh)
	return r
}

// dialControl connects to a fork-mode master's bus with the control credential
// its state file holds, as `master status` does.
func dialControl(t *testing.T, runDir string) *bus.Conn {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(runDir, "master.json"))
	if err != nil {
		t.Fatalf("master state file: %v", err)
	}
	var st struct{ Bus, User, Secret string }
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("master state file: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := bus.Dial(ctx, bus.Options{
		URL: st.Bus, User: st.User, Password: st.Secret, ID: bus.ControlID, Role: bus.RoleControl,
		Logger: bustest.Logger(t),
	})
	if err != nil {
		t.Fatalf("connect to the master's bus as control: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// status asks the master for its status (as `master status --json`) and notes
// every child pid in it.
func (r *rig) status(t *testing.T) statusJSON {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := r.ctl.RequestMaster(ctx, "status", nil)
	if err != nil {
		t.Fatalf("master status: %v", err)
	}
	var st statusJSON
	if err := m.Decode(&st); err != nil {
		t.Fatalf("master status: %v", err)
	}
	for _, c := range st.Children {
		if c.PID > 0 {
			r.pids[c.PID] = c.Role
		}
	}
	return st
}

// waitFresh waits until all of the rig's workers are ready and serve version v or
// a newer one, and returns how long that took.
func (r *rig) waitFresh(t *testing.T, v uint64, bound time.Duration) time.Duration {
	t.Helper()
	var last statusJSON
	start := time.Now()
	for {
		last = r.status(t)
		if freshIn(last, r.workers, v, nil) {
			return time.Since(start)
		}
		if time.Since(start) > bound {
			t.Fatalf("not every one of %d workers on version %d or newer within %v; status: %s", r.workers, v, bound, statusLine(last))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freshIn reports whether n workers are ready in st (besides those in skip) and
// each serves version v or newer.
func freshIn(st statusJSON, n int, v uint64, skip []int) bool {
	got := 0
	for _, c := range st.Children {
		if c.Role != "worker" || slices.Contains(skip, c.PID) {
			continue
		}
		if c.State != "ready" || c.Cache == nil || versionNum(c.Cache.Version) < v {
			return false
		}
		got++
	}
	return got == n
}

func statusLine(st statusJSON) string {
	var s []string
	for _, c := range st.Children {
		v := "-"
		if c.Cache != nil {
			v = c.Cache.Version
		}
		s = append(s, fmt.Sprintf("%s %d %s v%s", c.Role, c.PID, c.State, v))
	}
	return strings.Join(s, "; ")
}

// killChildren SIGKILLs n ready children of role (never the survivor) at once,
// checks that the master logs each exit with its signal and its backoff, waits
// for the replacements to be ready and for every worker to serve the source's
// latest version. It returns the time to the replacements ready and the time from
// then to every worker fresh.
func (r *rig) killChildren(t *testing.T, role string, n int) (restart, fresh time.Duration) {
	t.Helper()
	var victims []int
	for _, c := range r.status(t).Children {
		if c.Role == role && c.State == "ready" && c.PID != r.survivor && len(victims) < n {
			victims = append(victims, c.PID)
		}
	}
	if len(victims) < n {
		t.Fatalf("want %d ready %ss to kill, have %v", n, role, victims)
	}
	at := time.Now()
	for _, pid := range victims {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %s %d: %v", role, pid, err)
		}
	}
	r.kills = append(r.kills, kill{at: at, role: role, pids: victims})

	// The master explains each exit: the role, the pid, the signal, the wait.
	var wait time.Duration
	for _, pid := range victims {
		line := r.m.logs.waitFor(t, 10*time.Second, "restarting it after backoff",
			`"role":"`+role+`"`, fmt.Sprintf(`"pid":%d,`, pid), `"err":"exited: signal: killed"`)
		var rec struct {
			Msg   string
			Exits int
			Wait  string
		}
		json.Unmarshal([]byte(line), &rec)
		d, err := time.ParseDuration(rec.Wait)
		if err != nil {
			t.Fatalf("the master's exit record has no wait: %s", line)
		}
		wait = max(wait, d)
		// three quick exits in a row are a crash loop: said loudly, stderr included
		if loop := strings.Contains(rec.Msg, "crash looping"); loop != (rec.Exits >= 3) || (loop && !strings.Contains(line, `"stderr"`)) {
			t.Errorf("exit %d in a row of %s %d logged as %q; want a crash loop with stderr from the third on:\n%s", rec.Exits, role, pid, rec.Msg, line)
		}
	}
	var st statusJSON
	for {
		st = r.status(t)
		if replaced(st, r.workers, victims) {
			break
		}
		if time.Since(at) > wait+startBound {
			t.Fatalf("%s %v killed: not replaced within its backoff %v + %v; status: %s", role, victims, wait, startBound, statusLine(st))
		}
		time.Sleep(20 * time.Millisecond)
	}
	restart = time.Since(at)
	for _, c := range st.Children {
		if c.Role != role || !c.Started.After(at) {
			continue
		}
		// the master logs the replacement ready; a new worker, where its first data
		// came from: the agent (catch-up) or a refresh event, never the remote
		r.m.logs.waitFor(t, 5*time.Second, `"msg":"child ready"`, `"role":"`+role+`"`, fmt.Sprintf(`"pid":%d}`, c.PID))
		if role == "worker" {
			line := r.m.logs.waitFor(t, 5*time.Second, `"msg":"update memory cache from remote"`, fmt.Sprintf(`"child":"worker/%d"`, c.PID))
			if strings.Contains(line, `"via":"remote"`) {
				t.Errorf("worker %d read the remote at its start, the agent being up: %s", c.PID, line)
			}
		}
	}
	fresh = r.waitFresh(t, r.changes.latest(), freshBound)
	t.Logf("killed %s %v: replaced in %v (backoff %v), every worker fresh %v later",
		role, victims, restart.Round(time.Millisecond), wait, fresh.Round(time.Millisecond))
	return restart, fresh
}

// replaced reports whether the agent and n workers are ready and none of them is
// a victim.
func replaced(st statusJSON, n int, victims []int) bool {
	if !st.allReady(n) {
		return false
	}
	for _, c := range st.Children {
		if slices.Contains(victims, c.PID) {
			return false
		}
	}
	return true
}

// finish stops the changes and the load, checks the load, checks that every
// worker ends on the last change, that the survivor leaked nothing, and that the
// master stops cleanly leaving no process behind. It returns the load's results.
func (r *rig) finish(t *testing.T, check loadCheck) []result {
	t.Helper()
	r.changes.Stop(t)
	r.load.Stop()
	res := r.load.results()
	check.clients, check.kills = loadClients, r.kills
	if check.stream == nil {
		check.stream = r.changes
	}
	retried := check.check(t, res)
	lat := latencies(res)
	t.Logf("load: %d requests, %d retried once after a connection error, 0 failed allowed; latency p50 %v p99 %v max %v",
		len(res), retried, quantile(lat, .5).Round(time.Microsecond), quantile(lat, .99).Round(time.Microsecond), quantile(lat, 1).Round(time.Microsecond))
	slowest := slices.SortedFunc(slices.Values(res), func(a, b result) int { return cmp.Compare(b.end.Sub(b.start), a.end.Sub(a.start)) })
	t.Logf("slowest requests:\n%s", describe(slowest[:min(3, len(slowest))]))
	r.waitFresh(t, r.changes.latest(), freshBound)
	r.checkSurvivor(t)
	r.stop(t)
	return res
}

// workerUsage is a worker's goroutines and memory.
type workerUsage struct {
	goroutines int
	sys        int64 // bytes the Go runtime holds from the OS (go_memstats_sys_bytes)
	rss        int64 // bytes
}

// usage reads the goroutines and the Go runtime's memory of worker pid from its
// /metrics (through the shared port: the answer says which worker wrote it) and
// its RSS from /proc.
func (r *rig) usage(t *testing.T, pid int) workerUsage {
	t.Helper()
	var u workerUsage
	metric := workerMetrics(t, r.base, strconv.Itoa(pid))
	g, ok := metricValue(t, metric, "go_goroutines")
	sys, ok2 := metricValue(t, metric, "go_memstats_sys_bytes")
	if !ok || !ok2 {
		t.Fatalf("no go_goroutines or go_memstats_sys_bytes in the metrics of worker %d:\n%s", pid, metric)
	}
	u.goroutines, u.sys = int(g), int64(sys)
	u.rss = rss(t, pid)
	return u
}

// checkSurvivor asserts that the worker that lived through every disruption has
// no more goroutines than at the start (give or take a few), and that the memory
// its Go runtime holds is bounded.
//
// Not its RSS: the race detector's own memory (outside the Go runtime) grows by
// about half a kilobyte for every goroutine ever started, and the HTTP server
// starts one per connection. Measured with one -race worker and 480,000 requests,
// each on a new connection: RSS 30 -> 370 MB while go_memstats_sys_bytes stayed
// at 13 MB; the same load on a worker built without -race: RSS flat at 16 MB.
func (r *rig) checkSurvivor(t *testing.T) {
	t.Helper()
	after := r.usage(t, r.survivor)
	t.Logf("survivor worker %d: goroutines %d -> %d, Go runtime memory %.1f -> %.1f MiB (RSS with the race detector's %d -> %d MiB)",
		r.survivor, r.before.goroutines, after.goroutines, float64(r.before.sys)/(1<<20), float64(after.sys)/(1<<20), r.before.rss>>20, after.rss>>20)
	if after.goroutines > r.before.goroutines+goroutineSlack {
		t.Errorf("survivor worker %d has %d goroutines, %d at the start: a leak", r.survivor, after.goroutines, r.before.goroutines)
	}
	if limit := 2*r.before.sys + sysMargin; after.sys > limit {
		t.Errorf("survivor worker %d: its Go runtime holds %d MiB, over the bound %d MiB (2 x %d MiB + %d MiB)",
			r.survivor, after.sys>>20, limit>>20, r.before.sys>>20, sysMargin>>20)
	}
}

const (
	// goroutineSlack: a worker's goroutines vary with the connections open and the
	// requests under way; the load has stopped, so a handful at most remain.
	goroutineSlack = 10
	// sysMargin: what a worker's Go runtime may hold beyond twice what it had at
	// the start (its heap grows to twice what is live before a collection, and it
	// gives freed pages back to the OS lazily).
	sysMargin = 32 << 20
	// rssMargin: memory a -race process may keep after a run of changes beyond
	// twice what it had before (see checkSurvivor for why RSS is not a leak test
	// of a long -race run).
	rssMargin = 64 << 20
)

func rssLimit(before int64) int64 { return 2*before + rssMargin }

// stop SIGTERMs the master under load, expects exit code 0, and checks that no
// child it ever had is left: neither any pid it reported nor any process that
// inherited its run directory.
func (r *rig) stop(t *testing.T) {
	t.Helper()
	r.ctl.Close()
	for pid, role := range logPIDs(r.m.logs.String()) {
		r.pids[pid] = role
	}
	r.m.cmd.Process.Signal(syscall.SIGTERM)
	if code := r.m.wait(t, 30*time.Second); code != 0 {
		t.Errorf("master exit code after SIGTERM = %d, want 0", code)
	}
	took := checkNoLeftovers(t, r.m.runDir, r.pids)
	t.Logf("master stopped; every one of the %d children it ever had gone %v after its exit", len(r.pids), took.Round(time.Millisecond))
	checkLogs(t, "master", r.m.logs.String())
}

var (
	readyPID = regexp.MustCompile(`"msg":"child ready".*"role":"(agent|worker)","pid":(\d+)`)
	childPID = regexp.MustCompile(`"child":"(agent|worker)/(\d+)"`)
)

// logPIDs returns every child pid a master's log names, with its role.
func logPIDs(log string) map[int]string {
	pids := make(map[int]string)
	for _, re := range []*regexp.Regexp{readyPID, childPID} {
		for _, m := range re.FindAllStringSubmatch(log, -1) {
			pid, _ := strconv.Atoi(m[2])
			pids[pid] = m[1]
		}
	}
	return pids
}

// checkNoLeftovers waits up to 5s until every pid is gone and no process that
// inherited the run directory runs.
func checkNoLeftovers(t *testing.T, runDir string, pids map[int]string) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(5 * time.Second)
	for {
		var left []string
		for pid, role := range pids {
			if !processGone(pid) {
				left = append(left, fmt.Sprintf("%s %d", role, pid))
			}
		}
		for _, pid := range processesWithEnv("YOLK_RUN_DIR=" + runDir) {
			if _, ok := pids[pid]; !ok {
				left = append(left, fmt.Sprintf("pid %d (%s)", pid, cmdline(pid)))
			}
		}
		for pid, pgid := range processGroups() {
			if _, ok := pids[pgid]; ok && pid != pgid && !processGone(pid) {
				left = append(left, fmt.Sprintf("pid %d in the process group of %s %d (%s)", pid, pids[pgid], pgid, cmdline(pid)))
			}
		}
		if len(left) == 0 {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Errorf("processes left 5s after the master stopped: %s", strings.Join(left, ", "))
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processesWithEnv returns the live processes whose environment holds kv.
func processesWithEnv(kv string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	want := []byte(kv + "\x00")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		if (bytes.HasPrefix(env, want) || bytes.Contains(env, append([]byte{0}, want...))) && !processGone(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// processGroups returns the process group of every process.
func processGroups() map[int]int {
	entries, _ := os.ReadDir("/proc")
	groups := make(map[int]int)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// after the command name in parentheses: state, ppid, pgrp
		if i := bytes.LastIndexByte(b, ')'); i >= 0 {
			if f := strings.Fields(string(b[i+1:])); len(f) >= 3 {
				if pgid, err := strconv.Atoi(f[2]); err == nil {
					groups[pid] = pgid
				}
			}
		}
	}
	return groups
}

func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
}

// checkLogs fails t on a data race, a panic or a slow consumer in a process's log.
func checkLogs(t *testing.T, name, log string) {
	t.Helper()
	lower := strings.ToLower(log)
	for _, bad := range []string{"data race", "panic", "slow consumer"} {
		if i := strings.Index(lower, bad); i >= 0 {
			start := max(0, i-300)
			t.Errorf("%q in the log of %s: ...%s...", bad, name, log[start:min(len(log), i+300)])
		}
	}
}
