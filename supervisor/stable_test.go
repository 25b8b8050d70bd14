package supervisor

import (
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// restartWaits returns the backoff waits the supervisor logged for the exits
// of role's children, in order, and the pids they name.
func restartWaits(t *testing.T, log, role string) (waits []time.Duration, pids []int) {
	t.Helper()
	re := regexp.MustCompile(`role=` + role + ` pid=(\d+) .* wait=(\S+)`)
	for line := range strings.Lines(log) {
		if !strings.Contains(line, "restarting it after backoff") {
			continue
		}
		m := re.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		d, err := time.ParseDuration(m[2])
		if err != nil {
			t.Fatalf("bad wait in %q: %v", line, err)
		}
		pid, _ := strconv.Atoi(m[1])
		waits, pids = append(waits, d), append(pids, pid)
	}
	return waits, pids
}

// An agent that was ready for StableAfter is restarted at once each time it
// is killed: its backoff does not grow over kills in a row. Without the rule,
// 6 kills of a ready agent made it wait 3 s.
func TestStableChildRestartsAtOnce(t *testing.T) {
	const stable = 300 * time.Millisecond
	h := newHarness(t, 1, all("ready"), func(c *Config) {
		c.BackoffMin = 500 * time.Millisecond // 0.5 s doubling: a grown backoff would show
		c.BackoffMax = 30 * time.Second
		c.StableAfter = stable
	})
	h.run()
	h.waitAllReady()

	agent := h.s.Status()[0]
	readySeen := time.Now()
	for i := range 6 {
		// The scenario needs the child ready for StableAfter: a wait for time
		// to pass, not for an event.
		<-time.After(time.Until(readySeen.Add(stable)))
		killed := time.Now()
		if err := syscall.Kill(agent.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		var next ChildStatus
		waitFor(t, 30*time.Second, "the agent restarted and ready", func() bool {
			next = h.s.Status()[0]
			return next.PID != agent.PID && next.PID != 0 && next.State == StateReady
		})
		readySeen = time.Now()
		waits, pids := restartWaits(t, h.log.String(), "agent")
		if len(waits) != i+1 || pids[i] != agent.PID {
			t.Fatalf("kill %d: logged restarts of pids %v, want %d ending with %d", i+1, pids, i+1, agent.PID)
		}
		if waits[i] != 0 {
			t.Fatalf("kill %d of an agent ready for %v: backoff %v, want 0 (all waits %v)", i+1, stable, waits[i], waits)
		}
		if next.Restarts != i+1 {
			t.Errorf("kill %d: Status() restarts = %d, want %d", i+1, next.Restarts, i+1)
		}
		t.Logf("kill %d: replaced in %v", i+1, readySeen.Sub(killed).Round(time.Millisecond))
		agent = next
	}
	if strings.Contains(h.log.String(), "crash looping") {
		t.Errorf("kills of a stable agent logged as a crash loop:\n%s", h.log.String())
	}
}

// A worker that dies before it is ready, or right after, is still restarted
// after a growing backoff, and a crash loop is logged.
func TestCrashLoopStillBacksOff(t *testing.T) {
	for _, sc := range []string{"crashloop", "ready-exit"} {
		t.Run(sc, func(t *testing.T) {
			h := newHarness(t, 1, func(role string, n int) string {
				if role == "worker" && n > 0 {
					return sc
				}
				return "ready"
			}, func(c *Config) {
				c.BackoffMin = 20 * time.Millisecond
				c.BackoffMax = 10 * time.Second
				c.StableAfter = 5 * time.Second // far longer than "right after ready"
			})
			h.run()
			h.waitAllReady()
			if err := syscall.Kill(h.s.Status()[1].PID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			const n = 5 // the kill, then 4 crashes of the restarts
			var waits []time.Duration
			waitFor(t, 30*time.Second, "5 restarts of the worker", func() bool {
				waits, _ = restartWaits(t, h.log.String(), "worker")
				return len(waits) >= n
			})
			for i, w := range waits[1:n] {
				if w <= waits[i] {
					t.Errorf("crash %d: backoff %v after %v, want it to grow (all waits %v)", i+1, w, waits[i], waits[:n])
				}
			}
			if !strings.Contains(h.log.String(), "crash looping") {
				t.Errorf("no crash loop logged:\n%s", h.log.String())
			}
		})
	}
}
