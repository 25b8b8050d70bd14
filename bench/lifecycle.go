package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// lifecycle measures yolk (real binaries, 2 workers) starting and stopping:
// cold start from the exec of the master to the first HTTP 200, memory at
// rest, time from SIGTERM until every process is gone (idle), repeated; then
// failed requests during a rolling reload under load.
func (h *harness) lifecycle(ctx context.Context) {
	h.logf("lifecycle: cold start, memory at rest, SIGTERM to gone (%d times)", h.cfg.coldReps)
	src, err := h.startSource(ctx)
	if err != nil {
		h.fail("lifecycle: source: %v", err)
		return
	}
	defer src.p.stop(10 * time.Second)
	lc := h.lifecycleResult()
	type rep struct {
		rss   []ProcRSS
		total float64
	}
	var reps []rep
	for range h.cfg.coldReps {
		c, err := h.coldStart(ctx, src)
		if err != nil {
			h.fail("lifecycle: cold start: %v", err)
			break
		}
		lc.ColdStartMs = append(lc.ColdStartMs, c.coldMs)
		lc.ReadyLoggedMs = append(lc.ReadyLoggedMs, c.loggedMs)
		lc.StopMs = append(lc.StopMs, c.stopMs)
		reps = append(reps, rep{c.rss, c.total})
	}
	if len(reps) > 0 {
		slices.SortFunc(reps, func(a, b rep) int { return compareFloat(a.total, b.total) })
		mid := reps[(len(reps)-1)/2]
		lc.RestRSS, lc.RestTotalMB = mid.rss, mid.total
	}

	h.logf("lifecycle: rolling reload under load")
	r, err := h.reloadUnderLoad(ctx, src)
	if err != nil {
		h.fail("lifecycle: reload: %v", err)
		return
	}
	lc.Reload = r
}

func (h *harness) lifecycleResult() *LifecycleResult {
	if h.res.Lifecycle == nil {
		h.res.Lifecycle = &LifecycleResult{}
	}
	return h.res.Lifecycle
}

func compareFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

type coldRun struct {
	coldMs, stopMs float64
	loggedMs       float64 // the "startup" of the master's "yolk ready" line
	rss            []ProcRSS
	total          float64
}

// coldStart starts a master with 2 workers on a fixed port and polls GET
// /data/k0 until it answers 200; then lets it rest, reads its memory, and
// sends SIGTERM, timing until the master and its children are all gone.
func (h *harness) coldStart(ctx context.Context, src *source) (coldRun, error) {
	var c coldRun
	port, err := freePort()
	if err != nil {
		return c, err
	}
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/data/k0"
	t0 := time.Now()
	m, err := h.startMaster("master", 2, "YOLK_SOURCE_URL="+src.url, "YOLK_PUSH_URL="+src.natsURL,
		"YOLK_HTTP_ADDR=127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return c, err
	}
	stopped := false
	defer func() {
		if !stopped {
			m.stop()
		}
	}()
	first, err := firstOK(ctx, url, 30*time.Second, m.p)
	if err != nil {
		return c, err
	}
	c.coldMs = ms(first.Sub(t0))
	line, err := m.p.waitLine(ctx, 30*time.Second, `"msg":"yolk ready"`)
	if err != nil {
		return c, err
	}
	var rec struct{ Startup string }
	if json.Unmarshal([]byte(line), &rec) == nil {
		if d, err := time.ParseDuration(rec.Startup); err == nil {
			c.loggedMs = ms(d)
		}
	}
	st, err := m.waitAllReady(ctx, 2)
	if err != nil {
		return c, err
	}
	select {
	case <-time.After(h.cfg.rest):
	case <-ctx.Done():
		return c, ctx.Err()
	}
	pids := st.pids()
	if c.rss, c.total, err = readRSS(pids); err != nil {
		return c, err
	}

	m.ctl.Close() // not a process of the deployment
	m.ctl = nil
	t1 := time.Now()
	if err := m.p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return c, err
	}
	stopped = true
	for !allGone(pids) {
		if time.Since(t1) > 30*time.Second {
			m.p.kill()
			return c, errors.New("processes still running 30s after SIGTERM")
		}
		time.Sleep(time.Millisecond)
	}
	c.stopMs = ms(time.Since(t1))
	<-m.p.done
	if !m.p.cmd.ProcessState.Success() {
		h.note("the master exited with %v after SIGTERM", m.p.cmd.ProcessState)
	}
	return c, nil
}

func allGone(ps []ProcRSS) bool {
	for _, p := range ps {
		if !processGone(p.PID) {
			return false
		}
	}
	return true
}

// firstOK polls url on fresh connections until it answers 200 and returns
// when it did. A refused connection (the master does not listen yet) is
// retried after a millisecond.
func firstOK(ctx context.Context, url string, timeout time.Duration, p *proc) (time.Time, error) {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	last := "no attempt"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return time.Time{}, err
		}
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Now(), nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) || p.exited() {
			return time.Time{}, fmt.Errorf("no 200 from %s within %v (last: %s); master's output:\n%s", url, timeout, last, indent(p.out.tail(20)))
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// reloadClients is how many client goroutines loop GETs during a reload.
const reloadClients = 4

// reloadUnderLoad starts a master with 2 workers, has reloadClients
// goroutines loop GET /data/k{i} on keep-alive connections, asks the master
// for a rolling reload (as `master reload` does), waits until both workers
// are new and ready, and counts what the clients saw.
func (h *harness) reloadUnderLoad(ctx context.Context, src *source) (*Reload, error) {
	m, addr, st, err := h.startServing(ctx, 2, src)
	if err != nil {
		return nil, err
	}
	defer m.stop()
	old, _ := st.workers(2)

	var requests, non200, errs, retries atomic.Int64
	var firstErr atomic.Value
	client := &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: reloadClients},
		Timeout:   10 * time.Second,
	}
	defer client.CloseIdleConnections()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := range reloadClients {
		wg.Go(func() {
			defer guard()
			for i := c; ; i += reloadClients {
				select {
				case <-stop:
					return
				default:
				}
				conns := 0
				trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { conns++ }}
				req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet,
					"http://"+addr+"/data/k"+strconv.Itoa(i%100), nil)
				resp, err := client.Do(req)
				requests.Add(1)
				if conns > 1 {
					retries.Add(1)
				}
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					non200.Add(1)
					firstErr.CompareAndSwap(nil, resp.Status)
				}
			}
		})
	}
	took, err := reload(ctx, m, old)
	close(stop)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	r := &Reload{Requests: int(requests.Load()), Non200: int(non200.Load()), Errors: int(errs.Load()),
		Retries: int(retries.Load()), TookMs: ms(took), Clients: reloadClients}
	if s, ok := firstErr.Load().(string); ok {
		r.FirstErr = s
	}
	return r, nil
}

// reload lets the load run, asks for a rolling reload, waits until no old
// worker is left and both new ones are ready, and lets the load run on a
// little. It returns how long the reload took.
func reload(ctx context.Context, m *master, old []yolkProc) (time.Duration, error) {
	time.Sleep(300 * time.Millisecond)
	conn, err := m.control(ctx)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = conn.RequestMaster(rctx, "reload", nil)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("ask for a reload: %w", err)
	}
	for {
		st, err := m.status(ctx)
		if err == nil {
			ws, ok := st.workers(2)
			for _, w := range ws {
				ok = ok && !slices.ContainsFunc(old, func(o yolkProc) bool { return o.PID == w.PID })
			}
			if ok && !st.Reloading {
				st.pids()
				break
			}
		}
		if time.Since(t0) > 60*time.Second {
			return 0, fmt.Errorf("reload not done within 60s; master's output:\n%s", indent(m.p.out.tail(20)))
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(t0)
	time.Sleep(300 * time.Millisecond)
	return took, nil
}
