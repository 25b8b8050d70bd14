package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/yolkgo/yolk/prom"
)

func TestHandler(t *testing.T) {
	var st Store
	h := NewHandler(&st, "w1", nil)
	longKey := strings.Repeat("k", MaxKeyLen+1)

	empty := []struct{ method, target string }{{"GET", "/data"}, {"GET", "/data/a"}, {"HEAD", "/data/a"}}
	for _, tt := range empty {
		rec := doRequest(h, tt.method, tt.target)
		checkResponse(t, rec, tt.method+" "+tt.target+" before the first snapshot", http.StatusServiceUnavailable, "", `{"error":"no data yet"}`)
	}

	s := mustSnapshot(t, "12", t0, `{"a": [1, 2], "a/b": "slash", "é": 3, "`+longKey+`": 0}`)
	st.Swap(s.WithBy("push", t0.Add(time.Second)))
	tests := []struct {
		method, target string
		code           int
		body           string // "": not checked here
	}{
		{"GET", "/data/a", 200, `[1,2]`},
		{"GET", "/data/a%2Fb", 200, `"slash"`},
		{"GET", "/data/a/b", 200, `"slash"`},
		{"GET", "/data/%C3%A9", 200, `3`},
		{"GET", "/data/" + longKey, 404, `{"error":"no such key"}`},
		{"GET", "/data/missing", 404, `{"error":"no such key"}`},
		{"GET", "/data/", 404, `{"error":"no such key"}`},
		{"HEAD", "/data/a", 200, ``},
		{"PUT", "/data/a", 405, `{"error":"method not allowed"}`},
		{"POST", "/data", 405, `{"error":"method not allowed"}`},
		{"GET", "/other", 404, `{"error":"not found"}`},
		{"GET", "/datax", 404, `{"error":"not found"}`},
	}
	for _, tt := range tests {
		rec := doRequest(h, tt.method, tt.target)
		checkResponse(t, rec, tt.method+" "+tt.target, tt.code, "12", tt.body)
		if tt.code == 405 {
			if got := rec.Header().Get("Allow"); got != "GET, HEAD" {
				t.Errorf("%s %s: Allow = %q, want \"GET, HEAD\"", tt.method, tt.target, got)
			}
		}
	}

	rec := doRequest(h, "GET", "/data")
	checkResponse(t, rec, "GET /data", 200, "12", "")
	var all struct {
		Version      string                     `json:"version"`
		LastUpdateBy string                     `json:"lastUpdateBy"`
		UpdatedAt    time.Time                  `json:"updatedAt"`
		Items        map[string]json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &all); err != nil {
		t.Fatalf("GET /data body %q: %v", rec.Body, err)
	}
	if all.Version != "12" || all.LastUpdateBy != "push" || !all.UpdatedAt.Equal(t0.Add(time.Second)) ||
		len(all.Items) != 4 || string(all.Items["a"]) != "[1,2]" {
		t.Errorf("GET /data = %+v, want version 12 by push at %v with 4 items", all, t0.Add(time.Second))
	}
	if got, want := rec.Header().Get("Content-Length"), strconv.Itoa(rec.Body.Len()); got != want {
		t.Errorf("GET /data: Content-Length = %s, want %s", got, want)
	}
}

// doRequest serves one request with h.
func doRequest(h http.Handler, method, target string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec
}

// checkResponse checks a response of the handler: its code, headers and, unless
// body is empty, its body (without a trailing newline).
func checkResponse(t *testing.T, rec *httptest.ResponseRecorder, req string, code int, version, body string) {
	t.Helper()
	if rec.Code != code {
		t.Errorf("%s: code %d, want %d", req, rec.Code, code)
	}
	if got := rec.Header().Values(HeaderVersion); len(got) != 1 || got[0] != version {
		t.Errorf("%s: %s = %q, want [%q]", req, HeaderVersion, got, version)
	}
	if got := rec.Header().Values(HeaderWorker); len(got) != 1 || got[0] != "w1" {
		t.Errorf("%s: %s = %q, want [w1]", req, HeaderWorker, got)
	}
	if got := rec.Header().Get("Content-Type"); got != "application/json" {
		t.Errorf("%s: Content-Type = %q, want application/json", req, got)
	}
	if got := strings.TrimSuffix(rec.Body.String(), "\n"); body != "" && got != body {
		t.Errorf("%s: body %q, want %q", req, got, body)
	}
}

func TestHandlerOverHTTP(t *testing.T) {
	var st Store
	st.Swap(benchSnapshot(t, 5000)) // a body larger than any buffer: written in parts
	srv := httptest.NewServer(NewHandler(&st, "w1", nil))
	t.Cleanup(srv.Close)
	resp, err := srv.Client().Get(srv.URL + "/data")
	if err != nil {
		t.Fatalf("GET /data: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET /data: read body: %v", err)
	}
	var all struct{ Items map[string]json.RawMessage }
	if err := json.Unmarshal(body, &all); err != nil || len(all.Items) != 5000 {
		t.Errorf("GET /data over HTTP: %d items, %v; want 5000", len(all.Items), err)
	}
	if resp.ContentLength != int64(len(body)) {
		t.Errorf("GET /data over HTTP: Content-Length %d, body %d bytes", resp.ContentLength, len(body))
	}
}

func TestHandlerKeyAllocs(t *testing.T) {
	var st Store
	st.Swap(benchSnapshot(t, 100))
	h := NewHandler(&st, "w1", NewMetrics(prom.NewRegistry()))
	w := newDiscardWriter()
	for _, target := range []string{"/data/k42", "/data/missing", "/data"} {
		r := httptest.NewRequest("GET", target, nil)
		if n := testing.AllocsPerRun(100, func() { w.reset(); h.ServeHTTP(w, r) }); n != 0 {
			t.Errorf("GET %s allocates %v times in the handler, want 0", target, n)
		}
	}
}

func TestWithHeaders(t *testing.T) {
	var st Store
	h := WithHeaders(&st, "w1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = headerJSON
		io.WriteString(w, `{"ok":true}`)
	}))
	checkResponse(t, doRequest(h, "GET", "/healthz"), "GET /healthz before the first snapshot", 200, "", `{"ok":true}`)
	st.Swap(mustSnapshot(t, "5", t0, `{}`))
	checkResponse(t, doRequest(h, "GET", "/healthz"), "GET /healthz", 200, "5", `{"ok":true}`)
}

func TestMetrics(t *testing.T) {
	reg := prom.NewRegistry()
	m := NewMetrics(reg)
	var st Store
	h := NewHandler(&st, "w1", m)
	doRequest(h, "GET", "/data/a") // 503
	s := mustSnapshot(t, "42", t0, `{"a":1,"b":2}`).WithBy("push", time.Unix(1700000000, 500_000_000))
	st.Swap(s)
	m.SetSnapshot(s)
	m.Refresh("push")
	m.Refresh("push")
	m.Refresh("force")
	m.Fetch(nil)
	m.Fetch(ErrNotModified)
	m.Fetch(errors.New("boom"))
	m.BusMessage("refresh")
	doRequest(h, "GET", "/data/a")
	doRequest(h, "GET", "/data/a")
	doRequest(h, "GET", "/data/zz")
	doRequest(h, "DELETE", "/data/a")

	serve := reg
	rec := doRequest(serve, "GET", "/metrics")
	if rec.Code != 200 {
		t.Fatalf("GET /metrics: code %d", rec.Code)
	}
	text := rec.Body.String()
	for _, want := range []string{
		`yolk_cache_refreshes_total{by="push"} 2`,
		`yolk_cache_refreshes_total{by="force"} 1`,
		`yolk_remote_fetches_total 3`,
		`yolk_remote_fetch_errors_total 1`,
		`yolk_bus_messages_total{event="refresh"} 1`,
		`yolk_cache_version 42`,
		`yolk_cache_items 2`,
		`yolk_cache_updated_timestamp_seconds 1.7000000005e+09`,
		`yolk_http_requests_total{code="200"} 2`,
		`yolk_http_requests_total{code="404"} 1`,
		`yolk_http_requests_total{code="405"} 1`,
		`yolk_http_requests_total{code="503"} 1`,
	} {
		if !strings.Contains(text, want+"\n") && !strings.Contains(text, want+" ") && !strings.Contains(text, want+"{") {
			t.Errorf("GET /metrics lacks %s", want)
		}
	}

	// Every line is a comment or a sample in the text format, and every sample's
	// family was announced with its TYPE.
	sample := regexp.MustCompile(`^([a-z_]+)(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+]+$`)
	typed := map[string]bool{}
	for line := range strings.SplitSeq(strings.TrimSuffix(text, "\n"), "\n") {
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			typed[strings.Fields(f)[0]] = true
			continue
		}
		if strings.HasPrefix(line, "# HELP ") {
			continue
		}
		m := sample.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("GET /metrics: not a sample: %q", line)
		} else if !typed[m[1]] {
			t.Errorf("GET /metrics: sample of %s before its TYPE", m[1])
		}
	}

	m.SetSnapshot(mustSnapshot(t, "abc", t0, `{}`))
	if text := doRequest(serve, "GET", "/metrics").Body.String(); !strings.Contains(text, `yolk_cache_version 0`+"\n") {
		t.Errorf("GET /metrics after a non-numeric version lacks yolk_cache_version 0")
	}
}

func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.Refresh("push")
	m.Fetch(errors.New("boom"))
	m.BusMessage("refresh")
	m.SetSnapshot(mustSnapshot(t, "1", t0, `{}`))
	m.request(200)
}

func TestMetricsAreNotGlobal(t *testing.T) {
	// two workers' metrics in one process must not collide
	ra, rb := prom.NewRegistry(), prom.NewRegistry()
	a, _ := NewMetrics(ra), NewMetrics(rb)
	a.Refresh("push")
	if text := doRequest(rb, "GET", "/metrics").Body.String(); strings.Contains(text, `by="push"`) {
		t.Errorf("metrics of worker b show worker a's refresh")
	}
}

// discardWriter is a minimal http.ResponseWriter that keeps nothing but its
// header map, reused between requests.
type discardWriter struct {
	h    http.Header
	code int
}

func newDiscardWriter() *discardWriter { return &discardWriter{h: make(http.Header)} }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteString(s string) (int, error) {
	return len(s), nil
}
func (w *discardWriter) reset() { clear(w.h); w.code = 0 }

func BenchmarkHandlerKey(b *testing.B) {
	var st Store
	st.Swap(benchSnapshot(b, 1000))
	h := NewHandler(&st, "w1", NewMetrics(prom.NewRegistry()))
	r := httptest.NewRequest("GET", "/data/k42", nil)
	b.Run("writer", func(b *testing.B) {
		w := newDiscardWriter()
		b.ReportAllocs()
		for b.Loop() {
			w.reset()
			h.ServeHTTP(w, r)
		}
		if w.code != 200 {
			b.Fatalf("GET /data/k42: code %d", w.code)
		}
	})
	b.Run("recorder", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h.ServeHTTP(httptest.NewRecorder(), r)
		}
	})
}

func BenchmarkHandlerAll(b *testing.B) {
	var st Store
	st.Swap(benchSnapshot(b, 1000))
	h := NewHandler(&st, "w1", NewMetrics(prom.NewRegistry()))
	r := httptest.NewRequest("GET", "/data", nil)
	w := newDiscardWriter()
	b.ReportAllocs()
	for b.Loop() {
		w.reset()
		h.ServeHTTP(w, r)
	}
	if w.code != 200 {
		b.Fatalf("GET /data: code %d", w.code)
	}
}

// The fast path's answer to GET /data/{key} is the handler's: the same header
// lines (net/http adds Date and Content-Length to both) and body; it has
// none where the handler answers anything but 200.
func TestFastLookupIsHandler(t *testing.T) {
	var st Store
	look := NewFastLookup(&st, "w1", nil)
	h := NewHandler(&st, "w1", nil)
	if _, _, ok := look([]byte("/data/a")); ok {
		t.Errorf("fast lookup of /data/a before the first snapshot: ok, want none")
	}
	st.Swap(mustSnapshot(t, "12", t0, `{"a": [1, 2], "a/b": "slash"}`))
	for _, target := range []string{"/data/a", "/data/a/b", "/data/missing", "/data", "/other", "/data/"} {
		rec := doRequest(h, "GET", target)
		header, body, ok := look([]byte(target))
		if ok != (rec.Code == http.StatusOK && target != "/data") {
			t.Errorf("fast lookup of %s: ok %v; the handler answers %d", target, ok, rec.Code)
		}
		if !ok {
			continue
		}
		var want bytes.Buffer
		rec.Header().Write(&want)
		if string(header) != want.String() || string(body) != rec.Body.String() {
			t.Errorf("fast lookup of %s: %q %q, the handler's: %q %q", target, header, body, want.String(), rec.Body.String())
		}
	}
	path := []byte("/data/a") // as the event loop passes it: a slice of its buffer
	if n := testing.AllocsPerRun(100, func() { look(path) }); n != 0 {
		t.Errorf("fast lookup allocates %v times, want 0", n)
	}
}
