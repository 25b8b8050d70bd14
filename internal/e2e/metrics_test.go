package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// promTool returns the path of a tool of Debian's prometheus package
// (promtool, prometheus). Missing, it fails the test, unless
// YOLK_SKIP_PROMETHEUS=1 says to skip the tests that need it.
func promTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("YOLK_SKIP_PROMETHEUS") == "1" {
		t.Skipf("%s not installed, and YOLK_SKIP_PROMETHEUS=1", name)
	}
	t.Fatalf("%s not found in PATH: install it (apt-get install -y --no-install-recommends prometheus), or set YOLK_SKIP_PROMETHEUS=1 to skip this test", name)
	return ""
}

// adminURL is the master's admin address, from its "master started" line.
func (m *master) adminURL(t *testing.T) string {
	t.Helper()
	line := m.logs.waitFor(t, 30*time.Second, `"msg":"master started"`)
	var rec struct{ Admin string }
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Admin == "" {
		t.Fatalf("master started line without admin: %s", line)
	}
	return "http://" + rec.Admin
}

// getText GETs url and returns the body of a 200.
func getText(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d, %v: %s", url, resp.StatusCode, err, b)
	}
	return string(b)
}

// promtoolCheck runs `promtool check metrics` on an exposition: it lints
// names, types, HELP and the text format, and fails on a family announced twice.
func promtoolCheck(t *testing.T, promtool, what, exposition string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(exposition)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics on %s: %v\n%s", what, err, out)
	}
}

// TestMetricsPromtool: the master's /metrics holds every process's metrics,
// each family once, and passes promtool, as does a worker's own /metrics.
func TestMetricsPromtool(t *testing.T) {
	promtool := promTool(t, "promtool")
	m := startMaster(t, "YOLK_ADMIN_ADDR=127.0.0.1:0", "YOLK_WORKERS=2")
	base := m.waitReady(t)
	admin := m.adminURL(t)
	version := m.src.put(t, "k", `"v1"`)
	m.waitConverged(t, 2, version, 20*time.Second)
	readKey(t, base, "k", 2) // every worker answers a request, timed by its histogram

	var text string
	eventually(t, 10*time.Second, "the change counted on /metrics", func() bool {
		text = getText(t, admin+"/metrics")
		n, _ := metricValue(t, text, "yolk_changes_total")
		return n >= 2 // the start's version and the PUT's
	})
	promtoolCheck(t, promtool, "the master's /metrics", text)
	for _, want := range []string{
		`yolk_build_info{goversion="`,
		`yolk_remote_fetches_total{role="agent"}`,
		`yolk_http_request_duration_seconds_count{class="2xx",role="worker",slot="0"}`,
		`yolk_http_request_duration_seconds_count{class="2xx",role="worker",slot="1"}`,
		`yolk_cache_version{role="worker",slot="0"}`,
		`yolk_cache_version{role="worker",slot="1"}`,
		`go_goroutines{role="master"}`,
		`go_goroutines{role="agent"}`,
		`process_resident_memory_bytes{role="worker",slot="1"}`,
		`yolk_restarts_total{role="worker",slot="1"} 0`,
		`yolk_processes{role="worker",state="ready"} 2`,
		`yolk_change_convergence_seconds_count `,
		`yolk_change_fetches_count `,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the master's /metrics lacks %s", want)
		}
	}
	for _, role := range []string{`role="master"`, `role="agent"`, `role="worker",slot="0"`, `role="worker",slot="1"`} {
		if !strings.Contains(text, "yolk_build_info{goversion=") || !strings.Contains(text, role+`,version=`) {
			t.Errorf("the master's /metrics has no yolk_build_info{%s}", role)
		}
	}
	if n, _ := metricValue(t, text, `yolk_remote_fetches_total{role="agent"}`); n < 1 {
		t.Errorf("yolk_remote_fetches_total{role=\"agent\"} = %v after a change, want at least 1", n)
	}
	if n := strings.Count(text, "# TYPE go_goroutines "); n != 1 {
		t.Errorf("go_goroutines announced %d times, want once", n)
	}
	if strings.Contains(text, "worker=") {
		t.Errorf("the master's /metrics still labels samples worker=<pid>")
	}

	own := workerMetrics(t, base, strconv.Itoa(m.status(t).pids("worker")[0]))
	promtoolCheck(t, promtool, "a worker's own /metrics", own)
	if !strings.Contains(own, "yolk_http_request_duration_seconds_bucket{") || !strings.Contains(own, "yolk_cache_items ") {
		t.Errorf("a worker's own /metrics lacks its request histogram or its cache series:\n%s", own)
	}
}

// TestMetricsPrometheus: a real Prometheus server scraping the master every
// second sees every worker's slot, the agent's fetches after a change, and
// the same series after a reload, fed by the new workers.
func TestMetricsPrometheus(t *testing.T) {
	bin := promTool(t, "prometheus")
	m := startMaster(t, "YOLK_ADMIN_ADDR=127.0.0.1:0", "YOLK_WORKERS=2")
	m.waitReady(t)
	admin := m.adminURL(t)
	prom := startPrometheus(t, bin, strings.TrimPrefix(admin, "http://"))

	workerSlots := func() []string {
		var slots []string
		for _, s := range prom.query(t, `yolk_build_info{role="worker"}`) {
			slots = append(slots, s.Metric["slot"])
		}
		slices.Sort(slots)
		return slots
	}
	eventually(t, 30*time.Second, "Prometheus sees worker slots 0 and 1", func() bool {
		return slices.Equal(workerSlots(), []string{"0", "1"})
	})
	fetches := func() float64 {
		v := prom.query(t, `yolk_remote_fetches_total{role="agent"}`)
		if len(v) != 1 {
			return -1
		}
		return v[0].value(t)
	}
	eventually(t, 10*time.Second, "Prometheus sees the agent's fetches", func() bool { return fetches() >= 1 })
	before := fetches()
	version := m.src.put(t, "k", `"v1"`)
	m.waitConverged(t, 2, version, 20*time.Second)
	eventually(t, 10*time.Second, fmt.Sprintf("the agent's yolk_remote_fetches_total above %v after a change", before), func() bool {
		return fetches() > before
	})

	reloaded := time.Now()
	old := m.status(t).pids("worker")
	if out, err := m.cli(t, "reload"); err != nil {
		t.Fatalf("master reload: %v\n%s", err, out)
	}
	m.logs.waitFor(t, 60*time.Second, `"msg":"reload done"`)
	if now := m.status(t).pids("worker"); len(now) != 2 || slices.ContainsFunc(now, func(p int) bool { return slices.Contains(old, p) }) {
		t.Fatalf("workers after the reload %v, before %v: want two new ones", now, old)
	}
	// The new workers feed the old series: each slot's start time is after the
	// reload, and over the whole run there were only ever two worker series.
	eventually(t, 30*time.Second, "Prometheus sees both slots' new workers", func() bool {
		v := prom.query(t, `process_start_time_seconds{role="worker"}`)
		return len(v) == 2 && v[0].value(t) >= float64(reloaded.Unix()) && v[1].value(t) >= float64(reloaded.Unix())
	})
	if got := workerSlots(); !slices.Equal(got, []string{"0", "1"}) {
		t.Errorf("worker slots after the reload = %v, want [0 1]", got)
	}
	if v := prom.query(t, `count(count_over_time(process_start_time_seconds{role="worker"}[10m]))`); len(v) != 1 || v[0].value(t) != 2 {
		t.Errorf("worker series of process_start_time_seconds over the run = %v, want 2: a reload made new series", v)
	}
	if v := prom.query(t, `yolk_reloads_total{result="ok"}`); len(v) != 1 || v[0].value(t) != 1 {
		t.Errorf("yolk_reloads_total{result=\"ok\"} = %v, want 1", v)
	}
	if v := prom.query(t, `yolk_scrape_errors_total`); len(v) != 0 {
		t.Errorf("yolk_scrape_errors_total = %v, want none: every child answered", v)
	}
}

// prometheus is a running Prometheus server.
type prometheus struct {
	url string
}

// startPrometheus starts a Prometheus server that scrapes target's /metrics
// every second, with its storage in a temporary directory, and waits until it
// is ready.
func startPrometheus(t *testing.T, bin, target string) *prometheus {
	t.Helper()
	dir := t.TempDir()
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: yolk
    static_configs:
      - targets: [%q]
`, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start prometheus: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("prometheus log:\n%s", out.String())
		}
	})
	p := &prometheus{url: "http://" + addr}
	eventually(t, 30*time.Second, "prometheus ready", func() bool {
		select {
		case <-done:
			t.Fatalf("prometheus exited: %v\n%s", cmd.ProcessState, out.String())
		default:
		}
		resp, err := http.Get(p.url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// sample is one element of an instant vector from Prometheus's HTTP API.
type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"` // [time, "value"]
}

func (s sample) value(t *testing.T) float64 {
	t.Helper()
	v, ok := s.Value[1].(string)
	f, err := strconv.ParseFloat(v, 64)
	if !ok || err != nil {
		t.Fatalf("sample value %v: not a number", s.Value)
	}
	return f
}

// query runs an instant PromQL query and returns its vector.
func (p *prometheus) query(t *testing.T, q string) []sample {
	t.Helper()
	resp, err := http.Get(p.url + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string
		Error  string
		Data   struct {
			ResultType string
			Result     []sample
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Status != "success" || r.Data.ResultType != "vector" {
		t.Fatalf("query %s: %v, status %q %s, result type %q", q, err, r.Status, r.Error, r.Data.ResultType)
	}
	return r.Data.Result
}
