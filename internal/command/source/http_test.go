package source

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

// do sends a request and fails the test if it gets no answer.
func do(t *testing.T, method, url, body string, header map[string]string) *http.Response {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s %s: %v", resp.Request.Method, resp.Request.URL, err)
	}
	return string(b)
}

// decodeVersion reads a {"version":"..."} answer, which must be a 200.
func decodeVersion(t *testing.T, resp *http.Response) string {
	t.Helper()
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s = %s %s, want 200", resp.Request.Method, resp.Request.URL, resp.Status, body)
	}
	var v versionReply
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("%s %s: answer %q: %v", resp.Request.Method, resp.Request.URL, body, err)
	}
	return v.Version
}

type statsReply struct {
	Fetches, Checks int64
	Version         string
}

func getStats(t *testing.T, in *instance) statsReply {
	t.Helper()
	var s statsReply
	if err := json.Unmarshal([]byte(readAll(t, do(t, http.MethodGet, in.url("/stats"), "", nil))), &s); err != nil {
		t.Fatalf("GET /stats: %v", err)
	}
	return s
}

// getData fetches GET /data and returns the status, the ETag and the decoded body.
func getData(t *testing.T, in *instance, ifNoneMatch string) (int, string, map[string]json.RawMessage) {
	t.Helper()
	var h map[string]string
	if ifNoneMatch != "" {
		h = map[string]string{"If-None-Match": ifNoneMatch}
	}
	resp := do(t, http.MethodGet, in.url("/data"), "", h)
	body := readAll(t, resp)
	var data map[string]json.RawMessage
	if resp.StatusCode == http.StatusOK {
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET /data: Content-Type %q, want application/json", ct)
		}
		if err := json.Unmarshal([]byte(body), &data); err != nil {
			t.Fatalf("GET /data: body %.100q: %v", body, err)
		}
	}
	return resp.StatusCode, resp.Header.Get("ETag"), data
}

func TestDataETag(t *testing.T) {
	in := start(t)
	status, etag, data := getData(t, in, "")
	if status != http.StatusOK || etag != `"1"` {
		t.Fatalf("GET /data = %d with ETag %s, want 200 with \"1\"", status, etag)
	}
	if len(data) != 100 || data["k0"] == nil || data["k99"] == nil {
		t.Errorf("GET /data: %d keys (k0 %s, k99 %s), want k0..k99", len(data), data["k0"], data["k99"])
	}

	tests := []struct {
		ifNoneMatch string
		want        int
	}{
		{`"1"`, http.StatusNotModified},
		{`W/"1"`, http.StatusNotModified},
		{`"7", "1"`, http.StatusNotModified},
		{`*`, http.StatusNotModified},
		{`"2"`, http.StatusOK},
		{`1`, http.StatusOK},
	}
	wantFetches, wantChecks := int64(1), int64(0)
	for _, tt := range tests {
		status, etag, _ := getData(t, in, tt.ifNoneMatch)
		if status != tt.want || etag != `"1"` {
			t.Errorf("GET /data with If-None-Match %s = %d with ETag %s, want %d with \"1\"", tt.ifNoneMatch, status, etag, tt.want)
		}
		if tt.want == http.StatusOK {
			wantFetches++
		} else {
			wantChecks++
		}
	}
	if got, want := getStats(t, in), (statsReply{wantFetches, wantChecks, "1"}); got != want {
		t.Errorf("GET /stats = %+v, want %+v", got, want)
	}
}

func TestPutDelete(t *testing.T) {
	in := start(t)
	if v := decodeVersion(t, do(t, http.MethodPut, in.url("/data/new.key_1-x"), ` {"a": [1, 2]} `, nil)); v != "2" {
		t.Errorf("PUT /data/new.key_1-x: version %q, want 2", v)
	}
	status, etag, data := getData(t, in, `"1"`)
	if status != http.StatusOK || etag != `"2"` {
		t.Fatalf("GET /data with the old ETag after PUT = %d, ETag %s; want 200, \"2\"", status, etag)
	}
	if got, want := string(data["new.key_1-x"]), `{"a":[1,2]}`; got != want {
		t.Errorf("GET /data after PUT: new.key_1-x = %s, want %s", got, want)
	}
	if v := decodeVersion(t, do(t, http.MethodPut, in.url("/data/k0"), `"replaced"`, nil)); v != "3" {
		t.Errorf("PUT /data/k0: version %q, want 3", v)
	}

	if v := decodeVersion(t, do(t, http.MethodDelete, in.url("/data/k1"), "", nil)); v != "4" {
		t.Errorf("DELETE /data/k1: version %q, want 4", v)
	}
	_, etag, data = getData(t, in, "")
	if _, ok := data["k1"]; ok || etag != `"4"` {
		t.Errorf("GET /data after DELETE: k1 present %v, ETag %s; want absent, \"4\"", ok, etag)
	}
	if got := string(data["k0"]); got != `"replaced"` {
		t.Errorf("GET /data: k0 = %s, want \"replaced\"", got)
	}
	resp := do(t, http.MethodDelete, in.url("/data/k1"), "", nil)
	readAll(t, resp)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("DELETE /data/k1 twice = %s, want 404", resp.Status)
	}
	if got := getStats(t, in).Version; got != "4" {
		t.Errorf("GET /stats: version %q after a failed DELETE, want 4", got)
	}
}

func TestPutRejects(t *testing.T) {
	in := start(t, "SOURCE_NATS_ADDR=off")
	tests := []struct {
		name, key, body string
		want            int
		wantMsg         string
	}{
		{"bad json", "a", `{not json`, http.StatusBadRequest, "not valid JSON"},
		{"empty body", "a", ``, http.StatusBadRequest, "not valid JSON"},
		{"two values", "a", `1 2`, http.StatusBadRequest, "not valid JSON"},
		{"too large", "a", `"` + strings.Repeat("x", maxValueSize) + `"`, http.StatusRequestEntityTooLarge, "1 MiB"},
		{"space in key", "a%20b", `1`, http.StatusBadRequest, "key must be"},
		{"slash in key", "a%2Fb", `1`, http.StatusBadRequest, "key must be"},
		{"non-ASCII key", url.PathEscape("ä"), `1`, http.StatusBadRequest, "key must be"},
		{"long key", strings.Repeat("k", 257), `1`, http.StatusBadRequest, "key must be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := do(t, http.MethodPut, in.url("/data/"+tt.key), tt.body, nil)
			body := readAll(t, resp)
			if resp.StatusCode != tt.want || !strings.Contains(body, tt.wantMsg) {
				t.Errorf("PUT /data/%.20s = %s %s, want %d and a message with %q", tt.key, resp.Status, body, tt.want, tt.wantMsg)
			}
		})
	}
	if v := decodeVersion(t, do(t, http.MethodPut, in.url("/data/"+strings.Repeat("k", 256)), `null`, nil)); v != "2" {
		t.Errorf("PUT of a 256-character key: version %q, want 2", v)
	}
}

// setFault sets the fault mode and checks that GET /faults reports it.
func setFault(t *testing.T, in *instance, mode string) {
	t.Helper()
	resp := do(t, http.MethodPost, in.url("/faults"), `{"mode":"`+mode+`"}`, nil)
	if body := readAll(t, resp); resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /faults %s = %s %s", mode, resp.Status, body)
	}
	var got faultMode
	if err := json.Unmarshal([]byte(readAll(t, do(t, http.MethodGet, in.url("/faults"), "", nil))), &got); err != nil || got.Mode != mode {
		t.Fatalf("GET /faults = %+v (%v), want mode %s", got, err, mode)
	}
}

func TestFaults(t *testing.T) {
	in := start(t, "SOURCE_NATS_ADDR=off")
	_, _, want := getData(t, in, "")
	wantBody, _ := json.Marshal(want)

	tests := []struct {
		mode  string
		check func(t *testing.T, resp *http.Response)
	}{
		{"error500", func(t *testing.T, resp *http.Response) {
			if body := readAll(t, resp); resp.StatusCode != http.StatusInternalServerError {
				t.Errorf("GET /data = %s %s, want 500", resp.Status, body)
			}
		}},
		{"badjson", func(t *testing.T, resp *http.Response) {
			if body := readAll(t, resp); resp.StatusCode != http.StatusOK || body != "{not json" {
				t.Errorf("GET /data = %s %q, want 200 {not json", resp.Status, body)
			}
		}},
		{"truncated", func(t *testing.T, resp *http.Response) {
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("GET /data = %s, read error %v, want 200 and an unexpected EOF", resp.Status, err)
			}
			if int64(len(body)) >= resp.ContentLength {
				t.Errorf("GET /data: %d bytes of a Content-Length of %d, want fewer", len(body), resp.ContentLength)
			}
		}},
		{"huge", func(t *testing.T, resp *http.Response) {
			defer resp.Body.Close()
			head := make([]byte, 8)
			if _, err := io.ReadFull(resp.Body, head); err != nil || resp.StatusCode != http.StatusOK || string(head) != `{"huge0"` {
				t.Fatalf("GET /data = %s, starts %q (%v), want 200 and {\"huge0\"", resp.Status, head, err)
			}
			var last lastByte
			n, err := io.Copy(&last, resp.Body)
			if err != nil || n+8 < hugeSize || last.b != '}' {
				t.Errorf("GET /data: %d bytes ending %q (%v), want at least %d ending }", n+8, last.b, err, hugeSize)
			}
		}},
		{"wrongetag", func(t *testing.T, resp *http.Response) {
			body := readAll(t, resp)
			if resp.StatusCode != http.StatusOK || body != string(wantBody) {
				t.Errorf("GET /data = %s %.80q, want 200 and the data of version 1", resp.Status, body)
			}
			if etag := resp.Header.Get("ETag"); etag == `"1"` || etag == "" {
				t.Errorf("GET /data: ETag %s, want one that is not \"1\"", etag)
			}
		}},
	}
	fetches := getStats(t, in).Fetches
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			setFault(t, in, tt.mode)
			// A conditional GET with the current ETag still gets the fault.
			tt.check(t, do(t, http.MethodGet, in.url("/data"), "", map[string]string{"If-None-Match": `"1"`}))
			fetches++
			if got := getStats(t, in); got.Fetches != fetches || got.Checks != 0 {
				t.Errorf("GET /stats after a %s answer = %+v, want %d fetches and 0 checks", tt.mode, got, fetches)
			}
		})
	}

	t.Run("hang", func(t *testing.T) {
		setFault(t, in, "hang")
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, in.url("/data"), nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("GET /data with hang = %s, want no answer", resp.Status)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("GET /data with hang: %v, want the client's deadline", err)
		}
		if got := getStats(t, in).Fetches; got != fetches {
			t.Errorf("GET /stats: %d fetches after a hang, want %d", got, fetches)
		}
	})

	t.Run("none", func(t *testing.T) {
		setFault(t, in, "none")
		if status, _, _ := getData(t, in, `"1"`); status != http.StatusNotModified {
			t.Errorf("GET /data with the current ETag after none = %d, want 304", status)
		}
	})

	t.Run("unknown", func(t *testing.T) {
		for _, body := range []string{`{"mode":"flaky"}`, `{"mod":"none"}`, `none`} {
			resp := do(t, http.MethodPost, in.url("/faults"), body, nil)
			if msg := readAll(t, resp); resp.StatusCode != http.StatusBadRequest {
				t.Errorf("POST /faults %s = %s %s, want 400", body, resp.Status, msg)
			}
		}
	})
}

// lastByte is an io.Writer that keeps only the last byte written.
type lastByte struct{ b byte }

func (l *lastByte) Write(p []byte) (int, error) {
	if len(p) > 0 {
		l.b = p[len(p)-1]
	}
	return len(p), nil
}

// TestHangDoesNotBlockStop stops the source while a GET /data hangs: the client
// loses the connection and run returns.
func TestHangDoesNotBlockStop(t *testing.T) {
	in := start(t, "SOURCE_NATS_ADDR=off")
	setFault(t, in, "hang")
	got := make(chan error, 1)
	go func() {
		resp, err := http.Get(in.url("/data"))
		if err == nil {
			resp.Body.Close()
			err = errors.New(resp.Status)
		}
		got <- err
	}()
	in.waitLog(t, "GET /data hangs")
	if err := in.stop(); err != nil {
		t.Errorf("run() = %v after cancel, want nil", err)
	}
	select {
	case err := <-got:
		if err == nil {
			t.Error("hanging GET /data got an answer, want a closed connection")
		}
	case <-time.After(waitLong):
		t.Error("hanging GET /data still waits after the source stopped")
	}
}

// FuzzPut checks PUT /data/{key}: no panic, 2xx only for a valid key and a valid
// JSON body, and the data set stays valid JSON.
func FuzzPut(f *testing.F) {
	for _, seed := range []struct{ key, body string }{
		{"k1", `{"a":1}`}, {"k1", `{not json`}, {"a b", `1`}, {"", `1`}, {"x", ""},
		{"..", `1`}, {".", `1`}, {"k", `"\ud800"`}, {"k", "\"\xff\""}, {"k", `[1,2,{"x":null}]  `},
		{strings.Repeat("a", 257), `true`}, {"ä", `1`}, {"a/b", `1`}, {"k", `1 2`},
	} {
		f.Add(seed.key, seed.body)
	}
	f.Fuzz(func(t *testing.T, key, body string) {
		st, err := newStore(initialData(3), nil)
		if err != nil {
			t.Fatal(err)
		}
		h := newAPI(st, slog.New(slog.DiscardHandler)).handler()
		req := httptest.NewRequest(http.MethodPut, "/data/"+url.PathEscape(key), strings.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		valid := validKey(key) && json.Valid([]byte(body)) && len(body) <= maxValueSize
		ok := rec.Code >= 200 && rec.Code < 300
		if ok && !valid {
			t.Fatalf("PUT /data/%q %q = %d, want an error", key, body, rec.Code)
		}
		if !ok && valid && key != "." && key != ".." { // the mux cleans /data/. and /data/..
			t.Fatalf("PUT /data/%q %q = %d %s, want 200", key, body, rec.Code, rec.Body)
		}
		snap := st.Snapshot()
		if !json.Valid(snap.body) {
			t.Fatalf("after PUT /data/%q %q: data set is not valid JSON: %q", key, body, snap.body)
		}
		if ok {
			var data map[string]json.RawMessage
			if err := json.Unmarshal(snap.body, &data); err != nil {
				t.Fatal(err)
			}
			if got, want := decodeAny(t, data[key]), decodeAny(t, []byte(body)); !reflect.DeepEqual(got, want) {
				t.Fatalf("after PUT /data/%q %q: value %#v, want %#v", key, body, got, want)
			}
			if snap.version != "2" {
				t.Fatalf("after PUT: version %q, want 2", snap.version)
			}
		} else if snap.version != "1" {
			t.Fatalf("after a refused PUT: version %q, want 1", snap.version)
		}
	})
}

func decodeAny(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
	return v
}
