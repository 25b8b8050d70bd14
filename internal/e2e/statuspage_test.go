package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The browser of the status page test: Debian's chromium (`.ci/run` installs
// it), or YOLK_CHROMIUM. Without one the test fails, unless
// YOLK_SKIP_BROWSER=1 says to skip it.
func chromium(t *testing.T) string {
	t.Helper()
	if os.Getenv("YOLK_SKIP_BROWSER") == "1" {
		t.Skip("YOLK_SKIP_BROWSER=1: the status page is not tested in a browser")
	}
	names := []string{"chromium", "chromium-browser", "google-chrome"}
	if p := os.Getenv("YOLK_CHROMIUM"); p != "" {
		names = []string{p}
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Fatalf("no browser for the status page test (tried %v): apt-get install chromium, "+
		"or set YOLK_CHROMIUM to one, or YOLK_SKIP_BROWSER=1 to skip this test", names)
	return ""
}

// adminAddr is the status page's address, from the master's master.json.
func adminAddr(t *testing.T, runDir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(runDir, "master.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ Admin string }
	if err := json.Unmarshal(b, &st); err != nil || st.Admin == "" {
		t.Fatalf("master.json without the admin address: %s (%v)", b, err)
	}
	return "http://" + st.Admin
}

// page is the status page open in a headless browser.
type page struct {
	ctx context.Context
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, p page, js string) T {
	t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// until evaluates the boolean expression js until it holds, and returns how
// long that took; it fails the test after timeout.
func (p page) until(t *testing.T, timeout time.Duration, what, js string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if eval[bool](t, p, js) {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			text := eval[string](t, p, "document.querySelector('main').innerText")
			t.Fatalf("status page: %s: not within %v; the page shows:\n%s", what, timeout, text)
		}
	}
}

// TestStatusPage opens the master's status page once in headless Chromium and
// watches it: every process listed, a change at the source in the timeline
// within a second with no reload, a killed worker's restart on its row. It
// saves a screenshot as a test artifact (go test -artifacts), and, with
// YOLK_SCREENSHOT=path (relative to the module's root), there too: that is
// how docs/status-page.png is made.
func TestStatusPage(t *testing.T) {
	browser := chromium(t)
	const workers = 3
	m := startMaster(t, "YOLK_ADMIN_ADDR=127.0.0.1:0", "YOLK_WORKERS="+strconv.Itoa(workers), "YOLK_PULL_INTERVAL=2s")
	m.waitReady(t)
	url := adminAddr(t, m.runDir)

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.WindowSize(1280, 900),
		chromedp.Flag("hide-scrollbars", true), chromedp.Flag("force-device-scale-factor", "1"))
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	defer cancelBrowser()
	if err := chromedp.Do(bctx, chromedp.Navigate(url+"/"), chromedp.WaitVisible("#procs")); err != nil {
		t.Fatalf("open %s in %s: %v", url, browser, err)
	}
	p := page{ctx: bctx}
	// A mark that a reload of the page would wipe.
	eval[bool](t, p, "window.yolkMark = 'loaded once'; true")

	rows := func(sel string) string { return fmt.Sprintf("document.querySelectorAll(%q).length", sel) }
	p.until(t, 10*time.Second, "1 agent and 3 ready workers",
		rows(`#procs tbody tr[data-role=agent][data-state=ready]`)+" === 1 && "+
			rows(`#procs tbody tr[data-role=worker][data-state=ready]`)+" === "+strconv.Itoa(workers))
	if live := eval[string](t, p, "document.getElementById('live').textContent"); live != "live" {
		t.Errorf("the page's stream indicator says %q, want live", live)
	}

	// Changes at the source: each in the timeline within a second, and
	// complete (every worker has it) soon after.
	var shown []time.Duration
	for i := range 3 {
		start := time.Now()
		version := m.src.put(t, "page", fmt.Sprintf(`{"change":%d}`, i))
		row := fmt.Sprintf(`#timeline tbody tr[data-version=%q]`, version)
		p.until(t, time.Second, "version "+version+" in the timeline", rows(row)+" === 1")
		took := time.Since(start)
		shown = append(shown, took)
		p.until(t, 5*time.Second, "version "+version+" complete",
			fmt.Sprintf(`!document.querySelector(%q).classList.contains("pending")`, row))
		t.Logf("change %d: version %s in the page's timeline %v after the PUT, complete %v after", i, version,
			took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	}
	t.Logf("time from PUT to the page's timeline: %v", shown)

	// A killed worker: its slot's row shows the restart.
	victim := eval[string](t, p, `document.querySelector("#procs tbody tr[data-role=worker][data-slot='1'] td.mono").textContent`)
	pid, err := strconv.Atoi(victim)
	if err != nil {
		t.Fatalf("worker slot 1's id %q is no pid", victim)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	slot1 := `#procs tbody tr[data-role=worker][data-slot='1']`
	p.until(t, 20*time.Second, "worker slot 1 restarted once and ready",
		fmt.Sprintf(`(() => { const r = document.querySelector(%q); return !!r && r.dataset.state === "ready" &&
			r.querySelector("td.restarts").textContent === "1" && r.querySelector("td.mono").textContent !== %q })()`, slot1, victim))
	// One more change, so that the picture shows the restarted worker taking it too.
	version := m.src.put(t, "page", `{"change":"after the restart"}`)
	p.until(t, 5*time.Second, "the last change complete",
		fmt.Sprintf(`!!document.querySelector('#timeline tbody tr[data-version=%q]:not(.pending)')`, version))
	p.until(t, 5*time.Second, "messenger rates and CPU shown", rows("#rates tbody tr")+" > 0 && "+rows(`#procs td.cpu`)+" > 0")
	// The schedules: pull_refresh (every 2s here) has run in a worker, and
	// fires next in the future; force_refresh (10m) has a next time.
	p.until(t, 10*time.Second, "pull_refresh ran, ok", `(() => {
		const r = document.querySelector("#schedules tr[data-schedule=pull_refresh]");
		return !!r && r.querySelector("td.outcome").textContent === "ok" && r.lastChild.textContent.startsWith("in ") })()`)
	p.until(t, time.Second, "force_refresh listed", rows("#schedules tr[data-schedule=force_refresh]")+" === 1")

	if mark := eval[string](t, p, "window.yolkMark || 'reloaded'"); mark != "loaded once" {
		t.Errorf("the page was reloaded (mark %q): it must update in place", mark)
	}

	png, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := t.ArtifactDir()
	if err := os.WriteFile(filepath.Join(dir, "status-page.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", filepath.Join(dir, "status-page.png"))
	if out := os.Getenv("YOLK_SCREENSHOT"); out != "" {
		if !filepath.IsAbs(out) {
			out = filepath.Join("..", "..", out) // the module's root, from internal/e2e
		}
		if err := os.WriteFile(out, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot also in %s", out)
	}
}
