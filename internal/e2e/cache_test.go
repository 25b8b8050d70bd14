package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// put sets key to the JSON value at the source and returns the new version.
func (s *source) put(t *testing.T, key, value string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, s.url+"/data/"+key, strings.NewReader(value))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v", key, err)
	}
	defer resp.Body.Close()
	var r struct{ Version string }
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != 200 {
		t.Fatalf("PUT %s = %d, %v", key, resp.StatusCode, err)
	}
	return r.Version
}

type sourceStats struct {
	Fetches, Checks int
	Version         string
}

func (s *source) stats(t *testing.T) sourceStats {
	t.Helper()
	resp, err := http.Get(s.url + "/stats")
	if err != nil {
		t.Fatalf("GET /stats: %v", err)
	}
	defer resp.Body.Close()
	var st sourceStats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("GET /stats: %v", err)
	}
	return st
}

func (s *source) fault(t *testing.T, mode string) {
	t.Helper()
	resp, err := http.Post(s.url+"/faults", "application/json", strings.NewReader(`{"mode":"`+mode+`"}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST /faults %s: %v", mode, err)
	}
	resp.Body.Close()
}

// versions returns the cache version of every ready worker, by pid.
func (m *master) versions(t *testing.T) map[int]string {
	t.Helper()
	v := make(map[int]string)
	for _, c := range m.status(t).Children {
		if c.Role == "worker" && c.State == "ready" && c.Cache != nil {
			v[c.PID] = c.Cache.Version
		}
	}
	return v
}

// waitConverged waits until n workers are ready and all serve version.
func (m *master) waitConverged(t *testing.T, n int, version string, timeout time.Duration) time.Duration {
	t.Helper()
	return eventually(t, timeout, fmt.Sprintf("%d workers on version %s", n, version), func() bool {
		vs := m.versions(t)
		if len(vs) != n {
			return false
		}
		for _, v := range vs {
			if v != version {
				return false
			}
		}
		return true
	})
}

// readKey reads /data/key through the shared port until every one of n workers
// has answered, and returns the bodies by worker.
func readKey(t *testing.T, base, key string, n int) map[string]string {
	t.Helper()
	seen := make(map[string]string)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}} // spread over workers
	eventually(t, 10*time.Second, fmt.Sprintf("answers from %d workers", n), func() bool {
		resp, err := client.Get(base + "/data/" + key)
		if err != nil {
			t.Fatalf("GET /data/%s: %v", key, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET /data/%s = %d %s", key, resp.StatusCode, b)
		}
		seen[resp.Header.Get("X-Yolk-Worker")] = strings.TrimSpace(string(b))
		return len(seen) >= n
	})
	return seen
}

func TestRefreshReachesEveryWorker(t *testing.T) {
	tests := []struct {
		name  string
		env   []string
		bound time.Duration
	}{
		{"push", []string{"YOLK_PULL_INTERVAL=0", "YOLK_FORCE_INTERVAL=0"}, 3 * time.Second},
		{"pull", []string{"YOLK_PUSH_URL=off", "YOLK_PULL_INTERVAL=200ms", "YOLK_FORCE_INTERVAL=0"}, 3 * time.Second},
		{"force", []string{"YOLK_PUSH_URL=off", "YOLK_PULL_INTERVAL=0", "YOLK_FORCE_INTERVAL=300ms"}, 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := startMaster(t, append([]string{"YOLK_WORKERS=3"}, tt.env...)...)
			base := m.waitReady(t)
			start := m.src.stats(t)
			if tt.name != "force" && start.Fetches != 1 { // force runs may fire before this read
				t.Errorf("remote fetches for a cold start of 3 workers = %d, want 1", start.Fetches)
			}
			const changes = 3
			var version string
			for i := range changes {
				version = m.src.put(t, "k1", fmt.Sprintf(`{"change":%d}`, i))
				took := m.waitConverged(t, 3, version, tt.bound)
				t.Logf("%s: version %s in every worker after %v", tt.name, version, took)
			}
			for id, body := range readKey(t, base, "k1", 3) {
				if body != fmt.Sprintf(`{"change":%d}`, changes-1) {
					t.Errorf("worker %s serves k1 = %s", id, body)
				}
			}
			fetches := m.src.stats(t).Fetches - start.Fetches
			if tt.name == "force" {
				// force fetches on every run, changed or not: but once per run, not
				// once per worker. Each run is logged by each of the 3 workers.
				runs := strings.Count(m.logs.String(), `"msg":"schedule run"`) / 3
				if total := m.src.stats(t).Fetches; total > runs+2 { // + the cold start, + a run under way
					t.Errorf("%d remote fetches for %d force runs of 3 workers, want one per run", total, runs)
				}
				return
			}
			if fetches != changes {
				t.Errorf("remote fetches for %d changes with 3 workers = %d, want %d (one per change)", changes, fetches, changes)
			}
		})
	}
}

func TestRestartedWorkerCatchesUpWithoutFetching(t *testing.T) {
	m := startMaster(t, "YOLK_WORKERS=3", "YOLK_PULL_INTERVAL=0", "YOLK_FORCE_INTERVAL=0")
	m.waitReady(t)

	// changes while a worker is killed: its replacement ends on the newest
	var wg sync.WaitGroup
	var last string
	wg.Go(func() {
		for i := range 30 {
			last = m.src.put(t, "k2", fmt.Sprintf("%d", i))
		}
	})
	victim := m.status(t).pids("worker")[0]
	syscall.Kill(victim, syscall.SIGKILL)
	wg.Wait()
	m.waitConverged(t, 3, last, 5*time.Second)

	// with no change under way, a restart costs the remote nothing
	before := m.src.stats(t).Fetches
	victim = m.status(t).pids("worker")[1]
	syscall.Kill(victim, syscall.SIGKILL)
	eventually(t, 5*time.Second, "replacement ready", func() bool {
		st := m.status(t)
		return st.allReady(3) && !slices.Contains(st.pids("worker"), victim)
	})
	m.waitConverged(t, 3, last, 5*time.Second)
	if after := m.src.stats(t).Fetches; after != before {
		t.Errorf("remote fetches across a worker restart: %d, want 0", after-before)
	}
	if !strings.Contains(m.logs.String(), `"by":"start"`) && !strings.Contains(m.logs.String(), `"via":"bus"`) {
		t.Errorf("no worker logged taking the shared snapshot from the bus")
	}
}

func TestBadSourceKeepsLastGoodData(t *testing.T) {
	// force_refresh is what heals a source that lied about its version (wrongetag)
	m := startMaster(t, "YOLK_WORKERS=2", "YOLK_PULL_INTERVAL=0", "YOLK_FORCE_INTERVAL=1s", "YOLK_FETCH_TIMEOUT=300ms")
	base := m.waitReady(t)
	good := m.src.put(t, "k3", `"good"`)
	m.waitConverged(t, 2, good, 5*time.Second)

	for _, mode := range []string{"error500", "hang", "badjson", "truncated", "wrongetag"} {
		t.Run(mode, func(t *testing.T) {
			m.src.fault(t, mode)
			bad := m.src.put(t, "k3", `"`+mode+`"`)
			// the agent tries, fails, and keeps retrying; meanwhile every worker serves the last good data
			if mode != "wrongetag" {
				m.logs.waitFor(t, 10*time.Second, "remote source failed")
			}
			if mode != "wrongetag" {
				for id, body := range readKey(t, base, "k3", 2) {
					if body != `"good"` {
						t.Errorf("worker %s serves k3 = %s during %s, want the last good value", id, body, mode)
					}
				}
			}
			m.src.fault(t, "none")
			good = m.src.put(t, "k3", `"good"`)
			took := m.waitConverged(t, 2, good, 40*time.Second)
			// a wrong ETag poisons the version: only the next force_refresh (1s) can see it
			took += eventually(t, 5*time.Second, "every worker serving the good value", func() bool {
				for _, body := range readKey(t, base, "k3", 2) {
					if body != `"good"` {
						return false
					}
				}
				return true
			})
			t.Logf("%s: recovered %v after the source did (skipped version %s)", mode, took, bad)
		})
	}
}

func TestBurstOfChanges(t *testing.T) {
	m := startMaster(t, "YOLK_WORKERS=3", "YOLK_PULL_INTERVAL=0", "YOLK_FORCE_INTERVAL=0")
	m.waitReady(t)
	before := m.src.stats(t).Fetches
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 125 {
				m.src.put(t, fmt.Sprintf("b%d", w), fmt.Sprintf("%d", i))
			}
		})
	}
	wg.Wait()
	last := m.src.stats(t).Version
	t.Logf("1000 changes in %v", time.Since(start))
	m.waitConverged(t, 3, last, 10*time.Second)
	fetches := m.src.stats(t).Fetches - before
	t.Logf("1000 changes: %d remote fetches", fetches)
	if fetches >= 500 {
		t.Errorf("1000 changes cost %d remote fetches, want far fewer", fetches)
	}
}

func TestSourceGoesAwayAndComesBack(t *testing.T) {
	src := startSource(t)
	m := startMasterWith(t, src, "YOLK_WORKERS=2", "YOLK_PULL_INTERVAL=200ms", "YOLK_FORCE_INTERVAL=0", "YOLK_FETCH_TIMEOUT=300ms")
	base := m.waitReady(t)
	v := src.put(t, "k4", `"before"`)
	m.waitConverged(t, 2, v, 5*time.Second)

	src.cmd.Process.Signal(syscall.SIGTERM)
	if code := src.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("source exit code = %d", code)
	}
	m.logs.waitFor(t, 10*time.Second, "change feed disconnected")
	for id, body := range readKey(t, base, "k4", 2) {
		if body != `"before"` {
			t.Errorf("worker %s serves k4 = %s with the source gone, want the last good value", id, body)
		}
	}

	// the same addresses again: a new process whose versions start over
	again := startSource(t, "SOURCE_ADDR="+strings.TrimPrefix(src.url, "http://"), "SOURCE_NATS_ADDR="+strings.TrimPrefix(src.natsURL, "nats://"))
	v = again.put(t, "k4", `"after"`)
	took := eventually(t, 10*time.Second, "every worker serving the new source's data", func() bool {
		for _, body := range readKey(t, base, "k4", 2) {
			if body != `"after"` {
				return false
			}
		}
		return true
	})
	t.Logf("source back: every worker on its version %s after %v", v, took)
}

// TestConvergence measures, over 200 changes with 4 workers and push, the time
// from a PUT at the source to the last worker's cache update (as the master logs
// it, so a slight overestimate), and the remote fetches per change. Run it without
// -race for figures: go test -count=1 -run Convergence -v ./internal/e2e
func TestConvergence(t *testing.T) {
	m := startMaster(t, "YOLK_WORKERS=4", "YOLK_PULL_INTERVAL=10s", "YOLK_FORCE_INTERVAL=10m")
	m.waitReady(t)
	before := m.src.stats(t).Fetches
	const changes = 200
	var took []time.Duration
	for i := range changes {
		start := time.Now()
		v := m.src.put(t, "conv", fmt.Sprintf("%d", i))
		var last time.Time
		for range 4 {
			line := m.logs.waitFor(t, 10*time.Second, `"msg":"update memory cache from remote"`, `"version":"`+v+`"`, `"by":"push"`)
			var rec struct{ Time time.Time }
			json.Unmarshal([]byte(line), &rec)
			last = rec.Time
			// waitFor returns the first match; drop it so the next call finds the next worker's
			m.logs.forget(line)
		}
		took = append(took, last.Sub(start))
	}
	fetches := m.src.stats(t).Fetches - before
	slices.Sort(took)
	p := func(q float64) time.Duration { return took[int(q*float64(len(took)-1))] }
	t.Logf("PUT to all 4 workers updated, %d changes: p50 %v, p99 %v, max %v; remote fetches per change %.2f",
		changes, p(0.5), p(0.99), took[len(took)-1], float64(fetches)/changes)
	if fetches > changes {
		t.Errorf("%d remote fetches for %d changes, want at most one per change", fetches, changes)
	}
}
