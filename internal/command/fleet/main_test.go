package fleet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/yolkgo/yolk/internal/cli"
	"github.com/yolkgo/yolk/internal/fleetrig"
)

// binDir holds what make fleet builds: the yolk binaries, nats-server and fleet.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "yolk-fleet-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	for _, args := range [][]string{
		{"build", "-o", dir + "/", "../../../cmd/master", "../../../cmd/agent", "../../../cmd/worker", "../../../cmd/source", "../../../cmd/fleet"},
		{"build", "-o", filepath.Join(dir, "nats-server"), "github.com/nats-io/nats-server/v2"},
	} {
		cmd := exec.Command("go", args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "fleet: build:", err)
			return 1
		}
	}
	binDir = dir
	return m.Run()
}

// output collects the fleet's stdout and lets the test wait for a line.
type output struct {
	mu      sync.Mutex
	b       strings.Builder
	changed chan struct{}
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.b.Write(p)
	close(o.changed)
	o.changed = make(chan struct{})
	return len(p), nil
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// waitFor waits until the output holds sub, or fails the test after timeout.
func (o *output) waitFor(t *testing.T, timeout time.Duration, sub string) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		o.mu.Lock()
		ok, ch := strings.Contains(o.b.String(), sub), o.changed
		o.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no %q in the output within %v", sub, timeout)
		}
	}
}

func joinInts(ports []int) string {
	var s []string
	for _, p := range ports {
		s = append(s, strconv.Itoa(p))
	}
	return strings.Join(s, ",")
}

// fleetPorts returns the 14 ports of TestFleetStartsAndStopsOnSIGINT, all
// free and distinct, and such that each host's admin port (its HTTP port, the
// 10th to 12th, + 8: adminAddr) is free and none of the others: a random pick
// alone left a host's admin port on a NATS node's leaf port now and then.
func fleetPorts(t *testing.T) []int {
	t.Helper()
	for range 50 {
		ports, err := fleetrig.FreePorts(3*3 + 3 + 2)
		if err != nil {
			t.Fatal(err)
		}
		if adminPortsFree(ports, ports[9:12]) {
			return ports
		}
	}
	t.Fatal("no free ports whose admin ports are free too, in 50 tries")
	return nil
}

// adminPortsFree reports whether each of http's admin ports is outside taken
// and free to listen on now.
func adminPortsFree(taken, http []int) bool {
	for _, h := range http {
		admin := h + 8
		if slices.Contains(taken, admin) {
			return false
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", admin))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// TestFleetStartsAndStopsOnSIGINT runs bin/fleet as make fleet does, on free
// ports: the cluster, the source and 3 hosts come up, each host serves /data, and
// SIGINT stops the hosts, then the source, then the cluster, with exit code 0 and
// nothing left listening.
func TestFleetStartsAndStopsOnSIGINT(t *testing.T) {
	ports := fleetPorts(t)
	client, leaf, route, http3 := ports[0:3], ports[3:6], ports[6:9], ports[9:12]
	source, feed := fmt.Sprintf("127.0.0.1:%d", ports[12]), fmt.Sprintf("127.0.0.1:%d", ports[13])
	runDir := t.TempDir()

	out := &output{changed: make(chan struct{})}
	cmd := exec.Command(filepath.Join(binDir, "fleet"))
	cmd.Env = []string{
		"FLEET_BIN=" + binDir,
		"FLEET_RUN_DIR=" + runDir,
		"FLEET_NATS_CLIENT_PORTS=" + joinInts(client),
		"FLEET_NATS_LEAF_PORTS=" + joinInts(leaf),
		"FLEET_NATS_ROUTE_PORTS=" + joinInts(route),
		"FLEET_HTTP_PORTS=" + joinInts(http3),
		"FLEET_SOURCE_ADDR=" + source,
		"FLEET_SOURCE_NATS_ADDR=" + feed,
		"FLEET_STOP_TIMEOUT=15s",
		"YOLK_PULL_INTERVAL=1s",
	}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = out, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// WaitDelay: should the fleet die without stopping its children, they would
	// hold its stdout open.
	cmd.WaitDelay = 5 * time.Second
	var waitErr error
	done := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("fleet stdout:\n%s\nstderr:\n%s", out, stderr.String())
		}
	})

	out.waitFor(t, 30*time.Second, "the fleet is up")
	t.Logf("up in %v", time.Since(start).Round(time.Millisecond))
	for i, p := range http3 {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/data", p))
		if err != nil {
			t.Fatalf("GET /data on h%d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"items"`)) {
			t.Errorf("GET /data on h%d = %d %.100s, want 200 with items", i, resp.StatusCode, body)
		}
	}
	for i := range http3 {
		if _, err := os.Stat(filepath.Join(runDir, "h"+strconv.Itoa(i))); err != nil {
			t.Errorf("host h%d's run directory: %v", i, err)
		}
	}

	stopStart := time.Now()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		if waitErr != nil {
			t.Fatalf("fleet exited with %v after SIGINT, want 0", waitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("fleet still running 30s after SIGINT")
	}
	t.Logf("stopped in %v", time.Since(stopStart).Round(time.Millisecond))

	log := out.String()
	order := []string{"stopping the hosts", "stopping the source", "stopping the NATS cluster", "fleet  | stopped"}
	last := -1
	for _, s := range order {
		i := strings.Index(log, s)
		if i < 0 || i < last {
			t.Errorf("output: %q missing or out of order; want %q in that order", s, order)
		}
		last = i
	}
	// Every process is gone: nothing listens on any of the ports.
	for _, p := range ports {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), time.Second); err == nil {
			c.Close()
			t.Errorf("port %d still accepts connections after the fleet stopped", p)
		}
	}
	if out, err := exec.Command("pgrep", "-f", binDir).CombinedOutput(); err == nil {
		t.Errorf("processes of %s left after the fleet stopped:\n%s", binDir, out)
	}
}

func TestRunRejectsABadLayout(t *testing.T) {
	for _, env := range [][]string{
		{"FLEET_NATS_LEAF_PORTS=1,2"},
		{"FLEET_HTTP_PORTS=x"},
		{"YOLK_WORKERS=0"},
		{"FLEET_SOURCE_ADDR=nope"},
		{"FLEET_STOP_TIMEOUT=soon"},
	} {
		err := run(t.Context(), t.Context(), nil, env, io.Discard, io.Discard)
		var uerr *cli.UsageError
		if !errors.As(err, &uerr) {
			t.Errorf("run with %v = %v, want a usage error", env, err)
		}
	}
	if err := run(t.Context(), t.Context(), []string{"extra"}, nil, io.Discard, io.Discard); err == nil {
		t.Error("run with an argument = nil, want a usage error")
	}
}

// TestRunReportsMissingBinaries: without make build, it says what to do.
func TestRunReportsMissingBinaries(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := run(ctx, ctx, nil, []string{"FLEET_BIN=" + t.TempDir()}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "make fleet builds it") {
		t.Errorf("run without binaries = %v, want an error that says make fleet builds them", err)
	}
}
