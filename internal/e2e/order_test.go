package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// trickyValue is a JSON value that an encoder which escapes HTML (json.Marshal)
// or line separators would change: <, >, &, non-ASCII, U+2028 and U+2029 raw,
// and escapes the writer chose itself.
const trickyValue = `{"html":"<b>Tom & Jerry</b>","utf8":"héllo wörld 日本 😀","ls":"a` + "\u2028" + `b` + "\u2029" +
	`c","esc":"\u003c\u2028","list":["<",">","&"]}`

// served waits until every worker in ids has answered GET /data/key at version v
// or later, and fails if one answered at v with other bytes than want.
func served(t *testing.T, base, key string, ids []int, v uint64, want string, bound time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	seen := map[int]bool{}
	deadline := time.Now().Add(bound)
	for {
		code, worker, version, body, err := get1(client, base+"/data/"+key)
		pid, _ := strconv.Atoi(worker)
		if err == nil && code == http.StatusOK && versionNum(version) == v {
			if body != want {
				t.Fatalf("worker %s serves %s at version %d as\n%q\nthe source stored\n%q", worker, key, v, body, want)
			}
			seen[pid] = true
		}
		done := true
		for _, id := range ids {
			done = done && seen[id]
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every worker of %v served %s at version %d within %v: %v", ids, key, v, bound, seen)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Issue 12, 4: the source's bytes reach every worker unchanged, whichever way:
// push, pull, force, a worker's restart and the agent's restart; and a 700 KiB
// snapshot of such values reaches every worker. (Workers that got a snapshot by
// push served "<" as "\u003c", and a snapshot heavy in <>& grew past the bus's
// 1 MiB payload and reached no worker.)
func TestSourceBytesOnEveryWorker(t *testing.T) {
	paths := []struct {
		name string
		env  []string
	}{
		{"push", []string{"YOLK_PULL_INTERVAL=0", "YOLK_FORCE_INTERVAL=0"}},
		{"pull", []string{"YOLK_PUSH_URL=off", "YOLK_PULL_INTERVAL=100ms", "YOLK_FORCE_INTERVAL=0"}},
		{"force", []string{"YOLK_PUSH_URL=off", "YOLK_PULL_INTERVAL=0", "YOLK_FORCE_INTERVAL=200ms"}},
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			m := startMaster(t, p.env...)
			base := m.waitReady(t)
			workers := m.status(t).pids("worker")
			v := versionNum(m.src.put(t, "tricky", trickyValue))
			served(t, base, "tricky", workers, v, trickyValue, 10*time.Second)
			if p.name != "push" {
				return
			}

			// a snapshot of 700 KiB of such values
			big := bigTricky(700 << 10)
			v = versionNum(m.src.put(t, "big", big))
			served(t, base, "big", workers, v, big, 20*time.Second)

			// a worker's restart: its replacement serves the same bytes
			syscall.Kill(workers[0], syscall.SIGKILL)
			var now []int
			eventually(t, 10*time.Second, "the worker replaced", func() bool {
				st := m.status(t)
				now = st.pids("worker")
				return st.allReady(2) && !slices.Contains(now, workers[0])
			})
			served(t, base, "big", now, v, big, 10*time.Second)
			served(t, base, "tricky", now, v, trickyValue, 10*time.Second)

			// the agent's restart, and a change after it
			agent := readyAgent(t, m)
			syscall.Kill(agent, syscall.SIGKILL)
			eventually(t, 10*time.Second, "the agent replaced", func() bool {
				a := readyAgent(t, m)
				return a != agent
			})
			again := strings.Replace(trickyValue, "Tom", "Tom & Tom", 1)
			v = versionNum(m.src.put(t, "tricky", again))
			served(t, base, "tricky", now, v, again, 10*time.Second)
		})
	}
}

// bigTricky is a JSON object of about n bytes of tricky values.
func bigTricky(n int) string {
	var b bytes.Buffer
	b.WriteString("{")
	for i := 0; b.Len() < n; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"k%05d":%s`, i, trickyValue)
	}
	b.WriteString("}")
	return b.String()
}

// Issue 12, 9: push, pull and force all started in the agent, and its restart
// backoff grew on every death, so after 6 quick kills a change waited seconds for
// its return. Now the workers pull while it is away, and a ready agent restarts at
// once: with the agent SIGKILLed 6 times in a row, a change at the source reaches
// every worker within the pull interval plus 1 s.
func TestChangeReachesWorkersWhileTheAgentIsKilled(t *testing.T) {
	const pull = time.Second
	m := startMaster(t, "YOLK_PUSH_URL=off", "YOLK_PULL_INTERVAL="+pull.String(), "YOLK_FORCE_INTERVAL=0")
	base := m.waitReady(t)
	workers := m.status(t).pids("worker")
	for i := range 6 {
		agent := readyAgent(t, m)
		syscall.Kill(agent, syscall.SIGKILL)
		start := time.Now()
		v := versionNum(m.src.put(t, "k1", strconv.Itoa(i)))
		served(t, base, "k1", workers, v, strconv.Itoa(i), pull+time.Second)
		t.Logf("kill %d: the change reached both workers in %v", i+1, time.Since(start).Round(time.Millisecond))
	}
}

// readyAgent waits for the master's agent to be ready and returns its pid.
func readyAgent(t *testing.T, m *master) int {
	t.Helper()
	pid := 0
	eventually(t, 20*time.Second, "the agent ready", func() bool {
		for _, c := range m.status(t).Children {
			if c.Role == "agent" && c.State == "ready" && c.PID > 0 {
				pid = c.PID
				return true
			}
		}
		return false
	})
	return pid
}
