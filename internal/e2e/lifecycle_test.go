package e2e

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/yolkgo/yolk/bus"
)

func TestStartServeStop(t *testing.T) {
	m := startMaster(t)
	base := m.waitReady(t)

	code, body, err := get(http.DefaultClient, base+"/")
	if err != nil || code != 200 || !strings.HasPrefix(body, "yolk worker ") {
		t.Fatalf("GET / = %d %q, %v; want 200 yolk worker <id>", code, body, err)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _, err := get(http.DefaultClient, base+path); err != nil || code != 200 {
			t.Errorf("GET %s = %d, %v; want 200", path, code, err)
		}
	}
	st := m.status(t)
	if !st.allReady(2) {
		t.Fatalf("status = %+v, want the agent and 2 workers ready", st)
	}
	out, err := m.cli(t, "status")
	if err != nil || !strings.Contains(string(out), "ROLE") || strings.Count(string(out), "worker") != 2 {
		t.Errorf("master status = %v\n%s", err, out)
	}
	pids := append(st.pids("agent"), st.pids("worker")...)

	// The master told every child to send the compact wire version: their
	// heartbeats (one a second) say so.
	deadline := time.Now().Add(10 * time.Second)
	for {
		wires := map[int]int{}
		for _, c := range st.Children {
			wires[c.Wire]++
		}
		if wires[bus.WireVersion] == len(st.Children) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the children send wire versions %v (version: count), want all %d", wires, bus.WireVersion)
		}
		time.Sleep(100 * time.Millisecond)
		st = m.status(t)
	}

	m.cmd.Process.Signal(syscall.SIGTERM)
	if code := m.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("master exit code after SIGTERM = %d, want 0", code)
	}
	for _, pid := range pids {
		if !processGone(pid) {
			t.Errorf("child %d still running after the master stopped", pid)
		}
	}
	if out, err := m.cli(t, "status"); err == nil || !strings.Contains(string(out), "no master is running") {
		t.Errorf("master status after stop = %v %q, want 'no master is running'", err, out)
	}
}

func TestChildCrashIsRestarted(t *testing.T) {
	m := startMaster(t)
	base := m.waitReady(t)
	for _, role := range []string{"worker", "agent"} {
		t.Run(role, func(t *testing.T) {
			before := m.status(t)
			victim := before.pids(role)[0]
			if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			took := eventually(t, 2*time.Second, "a new "+role+" ready", func() bool {
				st := m.status(t)
				return st.allReady(2) && !containsInt(st.pids(role), victim)
			})
			t.Logf("%s %d killed: replacement ready in %v", role, victim, took)
			if code, _, err := get(http.DefaultClient, base+"/"); err != nil || code != 200 {
				t.Errorf("GET / after restart = %d, %v", code, err)
			}
		})
	}
}

func TestReloadUnderLoadDropsNothing(t *testing.T) {
	m := startMaster(t)
	base := m.waitReady(t)
	before := m.status(t).pids("worker")

	var sent, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			client := &http.Client{Timeout: 5 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(1)
				code, _, err := get(client, base+"/")
				if err != nil || code != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	eventually(t, 5*time.Second, "load running", func() bool { return sent.Load() > 100 })
	const reloads = 3
	for range reloads {
		m.cmd.Process.Signal(syscall.SIGHUP)
		m.logs.forget(m.logs.waitFor(t, 30*time.Second, `"msg":"reload done"`))
	}
	close(stop)
	wg.Wait()

	after := m.status(t)
	if !after.allReady(2) {
		t.Errorf("status after reload = %+v", after)
	}
	for _, pid := range after.pids("worker") {
		if containsInt(before, pid) {
			t.Errorf("worker %d survived the reload", pid)
		}
	}
	t.Logf("%d reloads under load: %d requests sent, %d failed", reloads, sent.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed during the reload; first: %v", failed.Load(), sent.Load(), firstErr.Load())
	}
}

func TestReloadCommand(t *testing.T) {
	m := startMaster(t)
	m.waitReady(t)
	before := m.status(t).pids("worker")
	if out, err := m.cli(t, "reload"); err != nil {
		t.Fatalf("master reload: %v\n%s", err, out)
	}
	eventually(t, 30*time.Second, "every worker replaced", func() bool {
		st := m.status(t)
		if st.Reloading || !st.allReady(2) {
			return false
		}
		for _, pid := range st.pids("worker") {
			if containsInt(before, pid) {
				return false
			}
		}
		return true
	})
}

func TestKillMasterLeavesNoOrphans(t *testing.T) {
	m := startMaster(t)
	m.waitReady(t)
	st := m.status(t)
	pids := append(st.pids("agent"), st.pids("worker")...)
	m.cmd.Process.Signal(syscall.SIGKILL)
	m.wait(t, 5*time.Second)
	took := eventually(t, 5*time.Second, "every child gone after SIGKILL of the master", func() bool {
		for _, pid := range pids {
			if !processGone(pid) {
				return false
			}
		}
		return true
	})
	t.Logf("children gone %v after the master was killed", took)
}

func TestAgentThatCannotStartStopsTheMaster(t *testing.T) {
	m := startMaster(t, "YOLK_AGENT_BIN=/bin/false", "YOLK_READY_TIMEOUT=2s")
	if code := m.wait(t, 20*time.Second); code == 0 {
		t.Fatalf("master exit code = 0 with an agent that cannot start, want non-zero")
	}
	if !strings.Contains(m.logs.String(), "start agent") {
		t.Errorf("master's error does not name the agent:\n%s", m.logs)
	}
}

func containsInt(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// The workers take new connections in turn from the master's socket (blocking
// accept, longest waiter first), where Go's netpoller gave most of them to
// whichever worker was already running.
func TestWorkersTakeConnectionsInTurn(t *testing.T) {
	m := startMaster(t)
	base := m.waitReady(t)
	eventually(t, 10*time.Second, "2 workers ready", func() bool { return m.status(t).allReady(2) })

	const conns = 30
	count := map[string]int{}
	for range conns { // one after another, each on a connection of its own, all kept open
		client := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
		defer client.CloseIdleConnections()
		resp, err := client.Get(base + "/data/k0")
		if err != nil {
			t.Fatalf("GET /data/k0: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		count[resp.Header.Get("X-Yolk-Worker")]++
	}
	t.Logf("connections per worker: %v", count)
	if len(count) != 2 {
		t.Fatalf("connections per worker: %v, want both workers", count)
	}
	for w, n := range count {
		if n < 2*conns/5 {
			t.Errorf("worker %s took %d of %d connections (%v); want them dealt in turn", w, n, conns, count)
		}
	}
}
