// Package compose brings compose.yaml up on the local Docker Engine with the
// image that make image builds, and checks what a user of make up relies on: a
// change at the source reaches every worker, the service heals when the agent or a
// worker is killed, and the agent and the workers reconnect when the master restarts.
// It logs how long each took. It does the same for compose.fleet.yaml: the NATS
// cluster, the source and the three hosts come up healthy, every host serves
// /data, a change reaches every worker of every host, and a killed host or NATS
// node heals.
//
// It needs a Docker Engine and docker-compose. Where none answers the test fails,
// unless YOLK_SKIP_DOCKER=1 says to skip it.
package compose

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	workers = 3
	// containers is what up starts: pod, source, master, agent and the workers.
	containers = 4 + workers

	buildTimeout    = 5 * time.Minute
	upTimeout       = 3 * time.Minute
	convergeTimeout = 90 * time.Second
	downTimeout     = 2 * time.Minute
)

func TestCompose(t *testing.T) {
	requireDocker(t)
	s := newStack(t, "compose.yaml", containers)
	s.ready = s.masterReady

	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), upTimeout)
	defer cancel()
	if out, err := s.compose(ctx, "up", "-d", "--scale", "worker="+strconv.Itoa(workers)); err != nil {
		t.Fatalf("docker-compose up: %v\n%s", err, out)
	}
	if err := s.waitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	upTime := time.Since(start)
	t.Logf("up to healthy, %d workers: %v", workers, upTime.Round(time.Millisecond))

	t.Run("data", func(t *testing.T) {
		var got struct {
			Version string                     `json:"version"`
			Items   map[string]json.RawMessage `json:"items"`
		}
		resp, err := s.get("/data")
		if err != nil {
			t.Fatal(err)
		}
		err = json.Unmarshal(resp.body, &got)
		if resp.status != http.StatusOK || err != nil || got.Version == "" || len(got.Items) == 0 {
			t.Fatalf("GET /data = %d %.200s (decode: %v), want 200 with a version and items", resp.status, resp.body, err)
		}
	})

	times := map[string]time.Duration{"up to healthy": upTime}
	t.Run("change reaches every worker", func(t *testing.T) {
		t0 := time.Now()
		s.change(t, "greeting", "hello")
		times["change to all workers"] = time.Since(t0)
	})

	t.Run("agent killed", func(t *testing.T) {
		agent := s.only(t, "agent")
		restarts := s.restartCount(t, agent)
		t0 := time.Now()
		s.kill(t, agent)
		// a change made while the agent is down reaches every worker once it is back
		s.change(t, "greeting", "after the agent was killed")
		times["agent kill to a change in all workers"] = time.Since(t0)
		s.waitRestarted(t, agent, restarts)
		times["agent kill to healthy"] = time.Since(t0)
	})

	t.Run("worker killed", func(t *testing.T) {
		worker := s.ids(t, "worker")[0]
		restarts := s.restartCount(t, worker)
		t0 := time.Now()
		s.kill(t, worker)
		s.change(t, "greeting", "after a worker was killed")
		times["worker kill to a change in all workers"] = time.Since(t0)
		s.waitRestarted(t, worker, restarts)
		times["worker kill to healthy"] = time.Since(t0)
	})

	// docker kill is a manual stop for Docker: the agent's container stays down
	// whatever its restart policy. The master must say so, not "healthy".
	t.Run("agent stopped by docker kill", func(t *testing.T) {
		agent := s.only(t, "agent")
		master := s.only(t, "master")
		ctx, cancel := context.WithTimeout(t.Context(), convergeTimeout)
		defer cancel()
		if out, err := docker(ctx, "kill", agent); err != nil {
			t.Fatalf("docker kill agent: %v\n%s", err, out)
		}
		t0 := time.Now()
		var health, status string
		for {
			health, _ = docker(ctx, "exec", master, "/master", "healthcheck")
			status, _ = docker(ctx, "exec", master, "/master", "status")
			if strings.Contains(health, "degraded: the agent is missing") && strings.Contains(status, "missing") {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("the master does not say the agent is missing after docker kill; healthcheck: %q; status:\n%s", health, status)
			case <-time.After(250 * time.Millisecond):
			}
		}
		times["docker kill of the agent to degraded"] = time.Since(t0)
		if out, _ := docker(ctx, "inspect", "-f", "{{.State.Status}}", agent); strings.TrimSpace(out) != "exited" {
			t.Errorf("the killed agent's container is %q, want exited (Docker does not restart a killed container)", strings.TrimSpace(out))
		}
		// docker start brings it back, as the README says; the master is ok again
		if out, err := docker(ctx, "start", agent); err != nil {
			t.Fatalf("docker start agent: %v\n%s", err, out)
		}
		if err := s.waitHealthy(ctx); err != nil {
			t.Fatal(err)
		}
		for !strings.Contains(health, "ok") || strings.Contains(health, "degraded") {
			health, _ = docker(ctx, "exec", master, "/master", "healthcheck")
			select {
			case <-ctx.Done():
				t.Fatalf("the master's health after docker start of the agent: %q, want ok", health)
			case <-time.After(250 * time.Millisecond):
			}
		}
		s.change(t, "greeting", "after the agent was started again")
	})

	t.Run("master restarted", func(t *testing.T) {
		master := s.only(t, "master")
		others := map[string]int{}
		for _, id := range append(s.ids(t, "agent"), s.ids(t, "worker")...) {
			others[id] = s.restartCount(t, id)
		}
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), convergeTimeout)
		defer cancel()
		if out, err := docker(ctx, "restart", "--time", "10", master); err != nil {
			t.Fatalf("docker restart master: %v\n%s", err, out)
		}
		s.change(t, "greeting", "after the master restarted")
		times["master restart to a change in all workers"] = time.Since(t0)
		if err := s.waitHealthy(ctx); err != nil {
			t.Fatal(err)
		}
		times["master restart to healthy"] = time.Since(t0)
		// They reconnected: none of them was restarted to get there.
		for id, before := range others {
			if now := s.restartCount(t, id); now != before {
				t.Errorf("container %.12s restarted (%d to %d) after the master restarted, want it to reconnect", id, before, now)
			}
		}
	})

	var keys []string
	for k := range times {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return int(times[a] - times[b]) })
	for _, k := range keys {
		t.Logf("%-45s %v", k, times[k].Round(time.Millisecond))
	}
}

// requireDocker fails the test unless a Docker Engine answers and docker-compose
// runs; YOLK_SKIP_DOCKER=1 turns that failure into a skip.
func requireDocker(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var err error
	if out, e := docker(ctx, "info", "--format", "{{.ServerVersion}}"); e != nil {
		err = fmt.Errorf("docker info: %v: %s", e, strings.TrimSpace(out))
	} else if out, e := run(ctx, nil, "", "docker-compose", "version", "--short"); e != nil {
		err = fmt.Errorf("docker-compose version: %v: %s", e, strings.TrimSpace(out))
	}
	if err == nil {
		return
	}
	if os.Getenv("YOLK_SKIP_DOCKER") == "1" {
		fmt.Fprintf(os.Stderr, "compose test: skipped (YOLK_SKIP_DOCKER=1): %v\n", err)
		t.Skipf("YOLK_SKIP_DOCKER=1, and no Docker Engine: %v", err)
	}
	t.Fatalf("the compose test needs a Docker Engine and docker-compose (set YOLK_SKIP_DOCKER=1 to skip it): %v", err)
}

// stack is one compose project, with its own name, image tag, secrets and host
// ports, so that it runs beside a user's make up.
type stack struct {
	t          *testing.T
	root       string                      // the repository, where compose.yaml is
	file       string                      // the compose file, in root
	want       int                         // how many containers up starts
	ready      func(context.Context) error // besides every container healthy; nil: nothing
	project    string
	image      string
	envFile    string
	port       int   // the workers' port on the host
	hostPorts  []int // compose.fleet.yaml: each host's port
	sourcePort int
	client     *http.Client
}

// newStack builds the image and writes the env file; its cleanup takes the project
// down with its volumes and removes the image, after printing the logs if the test
// failed.
func newStack(t *testing.T, file string, containers int) *stack {
	// deploytest/compose: the repository is two levels up.
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	suffix := randomHex(t, 4)
	s := &stack{
		t:          t,
		root:       root,
		file:       file,
		want:       containers,
		project:    "yolktest" + suffix,
		image:      "yolk:composetest-" + suffix,
		envFile:    filepath.Join(t.TempDir(), "compose.env"),
		port:       freePort(t),
		hostPorts:  []int{freePort(t), freePort(t), freePort(t)},
		sourcePort: freePort(t),
		// a new connection per request, so SO_REUSEPORT can pick any worker
		client: &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	}

	ctx, cancel := context.WithTimeout(t.Context(), buildTimeout)
	defer cancel()
	start := time.Now()
	if out, err := run(ctx, nil, root, "make", "image", "IMAGE="+s.image); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	t.Logf("make image %s: %v", s.image, time.Since(start).Round(time.Millisecond))
	out, err := docker(ctx, "image", "inspect", "-f", "{{.Size}} {{.Config.User}}", s.image)
	if err != nil {
		t.Fatalf("docker image inspect %s: %v\n%s", s.image, err, out)
	}
	size, user, _ := strings.Cut(strings.TrimSpace(out), " ")
	if user != "65532:65532" {
		t.Errorf("image %s runs as user %q, want 65532:65532", s.image, user)
	}
	n, err := strconv.ParseInt(size, 10, 64)
	if err != nil {
		t.Fatalf("image size %q: %v", size, err)
	}
	t.Logf("image %s: %.1f MB", s.image, float64(n)/1e6)
	if n >= 40e6 {
		t.Errorf("image %s is %.1f MB, want under 40 MB", s.image, float64(n)/1e6)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), downTimeout)
		defer cancel()
		if out, err := docker(ctx, "rmi", s.image); err != nil {
			t.Errorf("docker rmi %s: %v\n%s", s.image, err, out)
		}
	})

	env := fmt.Sprintf("YOLK_AGENT_SECRET=%s\nYOLK_WORKER_SECRET=%s\nYOLK_PUBLISH_PORT=%d\nSOURCE_PUBLISH_PORT=%d\nYOLK_IMAGE=%s\n",
		randomHex(t, 24), randomHex(t, 24), s.port, s.sourcePort, s.image)
	env += fmt.Sprintf("YOLK_CLUSTER_PASSWORD=%s\nYOLK_H0_PUBLISH_PORT=%d\nYOLK_H1_PUBLISH_PORT=%d\nYOLK_H2_PUBLISH_PORT=%d\n",
		randomHex(t, 24), s.hostPorts[0], s.hostPorts[1], s.hostPorts[2])
	if err := os.WriteFile(s.envFile, []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), downTimeout)
		defer cancel()
		if t.Failed() {
			out, _ := s.compose(ctx, "ps")
			logs, _ := s.compose(ctx, "logs", "--no-color", "--tail", "60")
			t.Logf("docker-compose ps:\n%s\ndocker-compose logs (last lines of each):\n%s", out, logs)
		}
		if out, err := s.compose(ctx, "down", "-v", "--remove-orphans", "--timeout", "10"); err != nil {
			t.Errorf("docker-compose down: %v\n%s", err, out)
		}
	})
	return s
}

// compose runs docker-compose on this project.
func (s *stack) compose(ctx context.Context, args ...string) (string, error) {
	args = append([]string{"-p", s.project, "--env-file", s.envFile, "-f", filepath.Join(s.root, s.file)}, args...)
	return run(ctx, composeEnv(), s.root, "docker-compose", args...)
}

// composeEnv is this process's environment without the variables that compose.yaml
// substitutes: docker-compose prefers them to the env file.
func composeEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "YOLK_") || strings.HasPrefix(kv, "SOURCE_") || strings.HasPrefix(kv, "COMPOSE_")
	})
}

// ids is the containers of one service. It asks docker, not docker-compose, which
// takes a second or more to start.
func (s *stack) ids(t *testing.T, service string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ids, err := s.containers(ctx, "label=com.docker.compose.service="+service)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// containers is the project's containers that match the docker ps filters, running
// or not.
func (s *stack) containers(ctx context.Context, filters ...string) ([]string, error) {
	args := []string{"ps", "-a", "-q", "--filter", "label=com.docker.compose.project=" + s.project}
	for _, f := range filters {
		args = append(args, "--filter", f)
	}
	out, err := docker(ctx, args...)
	if err != nil {
		return nil, fmt.Errorf("docker ps: %v: %s", err, out)
	}
	return strings.Fields(out), nil
}

// only is the one container of a service.
func (s *stack) only(t *testing.T, service string) string {
	t.Helper()
	ids := s.ids(t, service)
	if len(ids) != 1 {
		t.Fatalf("service %s has containers %v, want one", service, ids)
	}
	return ids[0]
}

// states is each container's health ("healthy", ...), or its state if it has no
// health check ("running", ...).
func (s *stack) states(ctx context.Context) (map[string]string, error) {
	ids, err := s.containers(ctx)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, errors.New("no container")
	}
	out, err := docker(ctx, append([]string{"inspect", "-f",
		"{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}"}, ids...)...)
	if err != nil {
		return nil, fmt.Errorf("docker inspect: %v: %s", err, out)
	}
	states := map[string]string{}
	for line := range strings.Lines(out) {
		name, state, _ := strings.Cut(strings.TrimSpace(line), " ")
		states[strings.TrimPrefix(name, "/")] = state
	}
	return states, nil
}

// waitHealthy waits until every container is healthy (or running, without a health
// check) and s.ready, if any, is satisfied.
func (s *stack) waitHealthy(ctx context.Context) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		states, err := s.states(ctx)
		switch {
		case err != nil:
			last = err.Error()
		case len(states) != s.want:
			last = fmt.Sprintf("%d containers, want %d: %v", len(states), s.want, states)
		case slices.ContainsFunc(slices.Collect(maps.Values(states)), func(st string) bool { return st != "healthy" && st != "running" }):
			last = fmt.Sprintf("not all healthy: %v", states)
		case s.ready == nil:
			return nil
		default:
			err := s.ready(ctx)
			if err == nil {
				return nil
			}
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for every container to be healthy: %w; last: %s", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// masterReady asks compose.yaml's master whether it is ready (the agent and a
// worker are).
func (s *stack) masterReady(ctx context.Context) error {
	masters, err := s.containers(ctx, "label=com.docker.compose.service=master")
	if err != nil || len(masters) != 1 {
		return fmt.Errorf("master containers %v: %v", masters, err)
	}
	if out, err := docker(ctx, "exec", masters[0], "/master", "healthcheck", "--ready"); err != nil {
		return fmt.Errorf("master healthcheck --ready: %v: %s", err, strings.TrimSpace(out))
	}
	return nil
}

// restartCount is how often Docker restarted a container by its restart policy.
func (s *stack) restartCount(t *testing.T, id string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := docker(ctx, "inspect", "-f", "{{.RestartCount}}", id)
	if err != nil {
		t.Fatalf("docker inspect %.12s: %v\n%s", id, err, out)
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("docker inspect %.12s: RestartCount %q: %v", id, out, err)
	}
	return n
}

// kill sends SIGKILL to a container's process from the host, as a crash would.
// Not docker kill: Docker counts that as a manual stop, and restart: unless-stopped
// does not restart the container (seen on Engine 20.10 with every signal).
func (s *stack) kill(t *testing.T, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := docker(ctx, "inspect", "-f", "{{.State.Pid}}", id)
	if err != nil {
		t.Fatalf("docker inspect %.12s: %v\n%s", id, err, out)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil || pid <= 1 { // 0: not running; and never signal init or a process group
		t.Fatalf("container %.12s: pid %q, want a running process", id, strings.TrimSpace(out))
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d (container %.12s, from the host; needs root or the container's uid): %v", pid, id, err)
	}
}

// waitRestarted waits until Docker has restarted a container and it is healthy.
func (s *stack) waitRestarted(t *testing.T, id string, before int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), convergeTimeout)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		out, err := docker(ctx, "inspect", "-f", "{{.RestartCount}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", id)
		last = strings.TrimSpace(out)
		if f := strings.Fields(last); err == nil && len(f) == 3 && f[0] != strconv.Itoa(before) && f[2] == "healthy" {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("container %.12s: not restarted and healthy after %v (restart count was %d; now restarts, state, health: %s)", id, convergeTimeout, before, last)
		case <-tick.C:
		}
	}
}

// answer is one HTTP response, read whole.
type answer struct {
	status  int
	body    []byte
	worker  string
	version string
}

func (s *stack) get(path string) (answer, error) { return s.getPort(s.port, path) }

// getPort is a GET on a published port of the host.
func (s *stack) getPort(port int, path string) (answer, error) {
	resp, err := s.client.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, body, resp.Header.Get("X-Yolk-Worker"), resp.Header.Get("X-Yolk-Version")}, err
}

// change sets key to value at the source and waits until every worker serves it:
// until as many distinct workers as there are worker containers have answered
// GET /data/{key} with the value.
func (s *stack) change(t *testing.T, key, value string) {
	t.Helper()
	s.waitServed(t, s.port, workers, key, s.put(t, key, value))
}

// put sets key to value at the source and returns the value's JSON.
func (s *stack) put(t *testing.T, key, value string) []byte {
	t.Helper()
	want, err := json.Marshal(value)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPut,
		fmt.Sprintf("http://127.0.0.1:%d/data/%s", s.sourcePort, key), bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("PUT /data/%s at the source: %v", key, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /data/%s at the source = %d %s, want 200", key, resp.StatusCode, body)
	}
	return want
}

// waitServed waits until n distinct workers behind port have answered
// GET /data/{key} with want.
func (s *stack) waitServed(t *testing.T, port, n int, key string, want []byte) {
	t.Helper()
	deadline := time.Now().Add(convergeTimeout)
	served := map[string]bool{} // worker ids that served the value
	stale := map[string]string{}
	failures := 0
	var lastErr error
	for len(served) < n {
		if time.Now().After(deadline) {
			t.Fatalf("after PUT /data/%s %s: %d of %d workers on port %d serve it after %v: %v; stale answers: %v; %d failed requests, last: %v",
				key, want, len(served), n, port, convergeTimeout, slices.Sorted(maps.Keys(served)), stale, failures, lastErr)
		}
		a, err := s.getPort(port, "/data/"+key)
		switch {
		case err != nil:
			failures++
			lastErr = err
		case a.status == http.StatusOK && bytes.Equal(bytes.TrimSpace(a.body), want):
			served[a.worker] = true
			delete(stale, a.worker)
		default:
			stale[a.worker] = fmt.Sprintf("%d %.60s (version %s)", a.status, a.body, a.version)
		}
		if len(served) < n && err != nil {
			time.Sleep(20 * time.Millisecond) // a refused connection returns at once: pace the retries
		}
	}
	if failures > 0 {
		t.Logf("PUT /data/%s: %d requests failed on the way (last: %v)", key, failures, lastErr)
	}
}

// docker runs the docker CLI.
func docker(ctx context.Context, args ...string) (string, error) {
	return run(ctx, nil, "", "docker", args...)
}

// run runs a command and returns its combined output. A nil env is this process's.
func run(ctx context.Context, env []string, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env, cmd.Dir = env, dir
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// freePort is a TCP port free on 127.0.0.1 right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
