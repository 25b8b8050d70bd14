package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// httpSection measures GET /data/{key} with wrk against yolk (real master, source
// with 100 keys), a bare Go net/http handler and the Node.js cluster, with
// workers workers (the bare Go server is one process with GOMAXPROCS at its
// default). With 2 workers it also measures the floor (raw-http), runs the
// systems in rounds (runRounds), and samples yolk's memory under the load.
func (h *harness) httpSection(ctx context.Context, workers int) {
	rounds, secs := 1, h.cfg.wrkDur
	if workers == 2 {
		rounds, secs = h.cfg.roundsFor(workers), h.cfg.wrkRoundDur
	}
	from := len(h.res.HTTP)
	var want *sample // yolk's answer, which the others' are compared with
	sides := []roundSide{
		{"yolk", func(int) error {
			w, err := h.httpYolk(ctx, workers, secs)
			want = cmp.Or(w, want)
			return err
		}},
		{fmt.Sprintf("bare Go net/http (1 process, GOMAXPROCS=%d)", runtime.NumCPU()), func(int) error {
			return h.httpGo(ctx, "go-http", sysGo, workers, want, secs)
		}},
		{"the floor, a minimal HTTP/1.1 loop without net/http (1 process)", func(int) error {
			return h.httpGo(ctx, "raw-http", sysFloor, workers, want, secs)
		}},
		{"node cluster", func(int) error { return h.httpNode(ctx, workers, secs) }},
	}
	names := []string{"yolk", "bare Go", "the floor", "node cluster"}
	if workers != 2 {
		sides = slices.Delete(sides, 2, 3)
		names = slices.Delete(names, 2, 3)
	}
	for i, err := range h.runRounds(ctx, fmt.Sprintf("HTTP, %d workers", workers), rounds, sides) {
		if err != nil {
			h.fail("HTTP: %s, %d workers: %v", names[i], workers, err)
		}
	}
	h.res.HTTP = append(h.res.HTTP[:from], medianRounds(h.res.HTTP[from:])...)
}

// medianRounds merges each system's rounds into one result: the median
// requests/s, p50 and p99 (each on its own), the sums of requests and errors,
// and each round's figures.
func medianRounds(rs []HTTPResult) []HTTPResult {
	var order []string
	by := map[string][]HTTPResult{}
	for _, r := range rs {
		if _, ok := by[r.System]; !ok {
			order = append(order, r.System)
		}
		by[r.System] = append(by[r.System], r)
	}
	var out []HTTPResult
	for _, sys := range order {
		runs := by[sys]
		m := runs[0]
		var rps, p50, p99 []float64
		m.Requests, m.Non2xx, m.SockErrs, m.PerRound = 0, 0, 0, nil
		for _, r := range runs {
			rps, p50, p99 = append(rps, r.RPS), append(p50, r.P50Ms), append(p99, r.P99Ms)
			m.Requests += r.Requests
			m.Non2xx += r.Non2xx
			m.SockErrs += r.SockErrs
			m.PerRound = append(m.PerRound, HTTPRound{RPS: r.RPS, P50Ms: r.P50Ms, P99Ms: r.P99Ms})
		}
		m.RPS, m.P50Ms, m.P99Ms, m.Rounds = median(rps), median(p50), median(p99), len(runs)
		out = append(out, m)
	}
	return out
}

// sample is a yolk answer to compare the bare Go handler's with.
type sample struct {
	body    string
	headers []string // names, sorted
}

func (h *harness) httpYolk(ctx context.Context, workers, secs int) (*sample, error) {
	src, err := h.startSource(ctx)
	if err != nil {
		return nil, err
	}
	defer src.p.stop(10 * time.Second)
	m, addr, st, err := h.startServing(ctx, workers, src)
	if err != nil {
		return nil, err
	}
	defer m.stop()
	want, err := fetchSample(ctx, "http://"+addr+"/data/k7")
	if err != nil {
		return nil, err
	}
	var during func(time.Duration)
	if workers == 2 {
		during = func(d time.Duration) { h.sampleLoadRSS(st.pids(), d) }
	}
	r, err := h.runWrk(ctx, "http://"+addr, secs, during)
	if err != nil {
		return want, err
	}
	r.System, r.Workers = sysYolk, workers
	r.Processes = "master, agent and the workers on the master's shared listener"
	h.res.HTTP = append(h.res.HTTP, r)
	return want, nil
}

// sampleLoadRSS reads the processes' memory at 40%, 60% and 80% of a wrk
// run of length d and keeps the largest total.
func (h *harness) sampleLoadRSS(ps []ProcRSS, d time.Duration) {
	start := time.Now()
	for _, at := range []float64{0.4, 0.6, 0.8} {
		time.Sleep(time.Until(start.Add(time.Duration(at * float64(d)))))
		rss, total, err := readRSS(ps)
		if err != nil {
			h.note("memory under load: %v", err)
			return
		}
		lc := h.lifecycleResult()
		if total > lc.LoadTotalMB {
			lc.LoadRSS, lc.LoadTotalMB = rss, total
		}
	}
}

// readRSS reads the memory of every process in ps.
func readRSS(ps []ProcRSS) ([]ProcRSS, float64, error) {
	out := slices.Clone(ps)
	total := 0.0
	for i := range out {
		mb, err := rssMB(out[i].PID)
		if err != nil {
			return nil, 0, fmt.Errorf("%s (pid %d): %w", out[i].Role, out[i].PID, err)
		}
		out[i].MB = mb
		total += mb
	}
	return out, total, nil
}

// httpGo measures the bare Go server (role go-http) or the floor (raw-http).
func (h *harness) httpGo(ctx context.Context, role, system string, workers int, want *sample, secs int) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p, err := startProc(role, h.bins.path("bench"), []string{role, addr}, baseEnv())
	if err != nil {
		return err
	}
	defer p.stop(5 * time.Second)
	if _, err := p.waitLine(ctx, 20*time.Second, "ready"); err != nil {
		return err
	}
	got, err := fetchSample(ctx, "http://"+addr+"/data/k7")
	if err != nil {
		return err
	}
	if want != nil && (got.body != want.body || !slices.Equal(got.headers, want.headers)) {
		h.note("the %s answer differs from yolk's: body %q headers %v, yolk: body %q headers %v",
			system, got.body, got.headers, want.body, want.headers)
	}
	r, err := h.runWrk(ctx, "http://"+addr, secs, nil)
	if err != nil {
		return err
	}
	r.System, r.Workers = system, workers
	r.Processes = fmt.Sprintf("1 process, GOMAXPROCS=%d (default)", runtime.NumCPU())
	h.res.HTTP = append(h.res.HTTP, r)
	return nil
}

func (h *harness) httpNode(ctx context.Context, workers, secs int) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	script := filepath.Join(h.anchors, "node-http", "cluster-http.js")
	p, err := startProc("node cluster", h.node, []string{script},
		baseEnv("WORKERS="+strconv.Itoa(workers), "PORT="+strconv.Itoa(port)))
	if err != nil {
		return err
	}
	defer p.stop(5 * time.Second)
	if _, err := p.waitLine(ctx, 30*time.Second, "ready"); err != nil {
		return err
	}
	r, err := h.runWrk(ctx, "http://127.0.0.1:"+strconv.Itoa(port), secs, nil)
	if err != nil {
		return err
	}
	r.System, r.Workers = sysNode, workers
	r.Processes = "a primary and the workers on a shared port"
	h.res.HTTP = append(h.res.HTTP, r)
	return nil
}

// fetchSample GETs url and returns the body and the header names (Date aside).
func fetchSample(ctx context.Context, url string) (*sample, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	s := &sample{body: string(b)}
	for k := range resp.Header {
		if k != "Date" {
			s.headers = append(s.headers, k)
		}
	}
	slices.Sort(s.headers)
	return s, nil
}

// wrkScript rotates over the 100 keys, with the requests built once.
const wrkScript = `local reqs = {}
local i = 0
init = function(args)
  for k = 0, 99 do reqs[k + 1] = wrk.format("GET", "/data/k" .. k) end
end
request = function()
  i = i % 100 + 1
  return reqs[i]
end
`

// runWrk runs wrk against base: a warm-up, then the measured run; during, if
// set, runs beside the measured run with its length.
func (h *harness) runWrk(ctx context.Context, base string, secs int, during func(time.Duration)) (HTTPResult, error) {
	script := filepath.Join(h.tmp, "rotate.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		return HTTPResult{}, err
	}
	run := func(secs int) (string, error) {
		cctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(cctx, h.wrk, "-t2", "-c64", "-d"+strconv.Itoa(secs)+"s",
			"--latency", "--timeout", "5s", "-s", script, base+"/")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("wrk: %w: %s", err, lastLines(string(out), 5))
		}
		return string(out), nil
	}
	if h.cfg.wrkWarm > 0 {
		if _, err := run(h.cfg.wrkWarm); err != nil {
			return HTTPResult{}, err
		}
	}
	done := make(chan struct{})
	if during != nil {
		go func() {
			defer guard()
			defer close(done)
			during(time.Duration(secs) * time.Second)
		}()
	} else {
		close(done)
	}
	out, err := run(secs)
	<-done
	if err != nil {
		return HTTPResult{}, err
	}
	r, err := parseWrk(out)
	if err != nil {
		return r, err
	}
	r.Duration = strconv.Itoa(secs) + "s"
	if r.Non2xx > 0 || r.SockErrs > 0 {
		h.note("wrk against %s: %d non-2xx answers, %d socket errors", base, r.Non2xx, r.SockErrs)
	}
	return r, nil
}

var (
	reRPS      = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	reReqs     = regexp.MustCompile(`(?m)^\s*(\d+) requests in`)
	rePct      = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	reNon2xx   = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses:\s+(\d+)`)
	reSockErrs = regexp.MustCompile(`(?m)^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// parseWrk reads requests/s, the p50 and p99 latencies (--latency), the
// request count, non-2xx answers and socket errors from wrk's output.
func parseWrk(out string) (HTTPResult, error) {
	var r HTTPResult
	m := reRPS.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no Requests/sec in wrk's output:\n%s", indent(out))
	}
	r.RPS, _ = strconv.ParseFloat(m[1], 64)
	if m := reReqs.FindStringSubmatch(out); m != nil {
		r.Requests, _ = strconv.Atoi(m[1])
	}
	pcts := rePct.FindAllStringSubmatch(out, -1)
	if len(pcts) != 2 {
		return r, fmt.Errorf("no latency distribution in wrk's output (want --latency):\n%s", indent(out))
	}
	for _, p := range pcts {
		v, _ := strconv.ParseFloat(p[2], 64)
		switch p[3] {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
		if p[1] == "50" {
			r.P50Ms = v
		} else {
			r.P99Ms = v
		}
	}
	if m := reNon2xx.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.Atoi(m[1])
	}
	if m := reSockErrs.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(s)
			r.SockErrs += n
		}
	}
	return r, nil
}

// runGoHTTP is the bare Go ceiling: one net/http server answering GET
// /data/k0..k99 with the bytes and headers a yolk worker sends for the
// source's initial data. It prints "ready" once it listens.
// benchItems are the values the bare Go server and the floor serve: those of
// bin/source's 100 keys.
func benchItems() map[string][]byte {
	items := make(map[string][]byte, 100)
	for i := range 100 {
		items["k"+strconv.Itoa(i)] = fmt.Appendf(nil, `{"name":"item %d","n":%d}`, i, i)
	}
	return items
}

func runGoHTTP(ctx context.Context, addr string, stdout io.Writer) error {
	items := benchItems()
	id := strconv.Itoa(os.Getpid())
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := strings.CutPrefix(r.URL.Path, "/data/")
		v, found := items[key]
		if !ok || !found {
			http.NotFound(w, r)
			return
		}
		hd := w.Header()
		hd.Set("Content-Type", "application/json")
		hd.Set("X-Yolk-Version", "1")
		hd.Set("X-Yolk-Worker", id)
		w.Write(v)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintln(stdout, "ready", ln.Addr())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// runRawHTTP is the floor of the HTTP section: the least a Go process can do to
// answer wrk's requests, a loop per connection that reads a request head and
// writes the prepared answer for its path, flushing when no request is waiting.
// It is not an HTTP server (no bodies, no limits, no timeouts): it shows what
// the machine, the kernel and wrk allow, whatever the server.
func runRawHTTP(ctx context.Context, addr string, stdout io.Writer) error {
	p := prepareAnswers()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "ready", ln.Addr())
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go serveRaw(c, p)
	}
}
