package compose

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	hosts          = 3
	workersPerHost = 2 // compose.fleet.yaml's YOLK_WORKERS
	// fleetContainers is what compose.fleet.yaml starts: 3 NATS nodes, the
	// source, the hosts.
	fleetContainers = 3 + 1 + hosts
)

// TestComposeFleetConfig validates compose.fleet.yaml without starting anything:
// docker-compose config accepts it, and refuses it without a leaf password.
func TestComposeFleetConfig(t *testing.T) {
	requireDocker(t)
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name, env string
		ok        bool
	}{
		{"with a password", "YOLK_CLUSTER_PASSWORD=" + randomHex(t, 16) + "\n", true},
		{"without a password", "YOLK_IMAGE=yolk:dev\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			envFile := filepath.Join(dir, "env")
			if err := os.WriteFile(envFile, []byte(tc.env), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			out, err := run(ctx, composeEnv(), root, "docker-compose", "--env-file", envFile, "-f", "compose.fleet.yaml", "config", "-q")
			if tc.ok && err != nil {
				t.Errorf("docker-compose -f compose.fleet.yaml config: %v\n%s", err, out)
			}
			if !tc.ok && (err == nil || !strings.Contains(out, "YOLK_CLUSTER_PASSWORD")) {
				t.Errorf("docker-compose config without YOLK_CLUSTER_PASSWORD = %v\n%s\nwant an error naming it", err, out)
			}
		})
	}
}

func TestComposeFleet(t *testing.T) {
	requireDocker(t)
	s := newStack(t, "compose.fleet.yaml", fleetContainers)

	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), upTimeout)
	defer cancel()
	if out, err := s.compose(ctx, "up", "-d"); err != nil {
		t.Fatalf("docker-compose up: %v\n%s", err, out)
	}
	// Every container healthy: the NATS nodes once JetStream has a meta leader,
	// the hosts once their agent and a worker are ready.
	if err := s.waitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	times := map[string]time.Duration{"up to healthy": time.Since(start)}

	t.Run("every host serves data", func(t *testing.T) {
		for i, port := range s.hostPorts {
			var got struct {
				Version string                     `json:"version"`
				Items   map[string]json.RawMessage `json:"items"`
			}
			a, err := s.getPort(port, "/data")
			if err != nil {
				t.Fatalf("h%d: GET /data: %v", i, err)
			}
			err = json.Unmarshal(a.body, &got)
			if a.status != http.StatusOK || err != nil || got.Version == "" || len(got.Items) == 0 {
				t.Errorf("h%d: GET /data = %d %.200s (decode: %v), want 200 with a version and items", i, a.status, a.body, err)
			}
		}
	})

	// change sets a key at the source and waits until every worker of every host
	// serves it.
	change := func(t *testing.T, value string) {
		t.Helper()
		want := s.put(t, "greeting", value)
		for _, port := range s.hostPorts {
			s.waitServed(t, port, workersPerHost, "greeting", want)
		}
	}
	t.Run("change reaches every host", func(t *testing.T) {
		t0 := time.Now()
		change(t, "hello fleet")
		times["change to every worker of every host"] = time.Since(t0)
	})

	// The hosts are one fleet, not three islands: each master's bus is linked
	// to the cluster, an agent holds the cache's lease, and the source sees one
	// fetch per change for the three hosts together.
	t.Run("one fleet", func(t *testing.T) {
		for _, host := range []string{"h0", "h1", "h2"} {
			out, err := s.compose(ctx, "exec", "-T", host, "/master", "status")
			if err != nil || !strings.Contains(out, "link to the cluster up") || !strings.Contains(out, "\ncache ") {
				t.Errorf("%s: master status (%v) does not show the link up and the cache's lease:\n%s", host, err, out)
			}
		}
		before := s.sourceStats(t)
		const changes = 5
		for i := range changes {
			change(t, fmt.Sprintf("one fleet %d", i))
		}
		if got := s.sourceStats(t).Fetches - before.Fetches; got != changes {
			t.Errorf("%d fetches for %d changes over 3 hosts, want one each", got, changes)
		}
	})

	t.Run("host killed", func(t *testing.T) {
		h1 := s.only(t, "h1")
		restarts := s.restartCount(t, h1)
		t0 := time.Now()
		s.kill(t, h1)
		s.waitRestarted(t, h1, restarts)
		change(t, "after a host was killed")
		times["host kill to a change in every host"] = time.Since(t0)
	})

	t.Run("NATS node killed", func(t *testing.T) {
		n0 := s.only(t, "nats-n0")
		restarts := s.restartCount(t, n0)
		t0 := time.Now()
		s.kill(t, n0)
		change(t, "after a NATS node was killed")
		times["NATS node kill to a change in every host"] = time.Since(t0)
		s.waitRestarted(t, n0, restarts)
		times["NATS node kill to healthy"] = time.Since(t0)
	})

	for _, k := range slices.Sorted(maps.Keys(times)) {
		t.Logf("%-45s %v", k, times[k].Round(time.Millisecond))
	}
}

// sourceStats is the source's GET /stats: its full answers and 304s.
func (s *stack) sourceStats(t *testing.T) struct{ Fetches, Checks int } {
	t.Helper()
	var st struct{ Fetches, Checks int }
	resp, err := s.client.Get(fmt.Sprintf("http://127.0.0.1:%d/stats", s.sourcePort))
	if err != nil {
		t.Fatalf("GET /stats at the source: %v", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("GET /stats at the source: %v", err)
	}
	return st
}
