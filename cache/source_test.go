package cache

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// serveSource starts a test server with h and returns an HTTPSource for its /data.
func serveSource(t *testing.T, h http.HandlerFunc) *HTTPSource {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &HTTPSource{URL: srv.URL + "/data", Client: srv.Client()}
}

// fixedAnswer answers every request with one status, ETag and body.
func fixedAnswer(code int, etag, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if etag != "" {
			w.Header().Set("ETag", etag)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		w.Write([]byte(body))
	}
}

func TestHTTPSourceFetch(t *testing.T) {
	var (
		mu  sync.Mutex
		got http.Header
	)
	src := serveSource(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Clone()
		mu.Unlock()
		fixedAnswer(http.StatusOK, `"7"`, `{"a": 1, "b": {"c": [true]}}`)(w, r)
	})
	before := time.Now()
	s, err := src.Fetch(t.Context())
	if err != nil {
		t.Fatalf("Fetch(): %v", err)
	}
	if s.Version != "7" || string(s.Items["a"]) != "1" || string(s.Items["b"]) != `{"c":[true]}` {
		t.Errorf("Fetch() = {%q, %q}, want {\"7\", a: 1, b: {\"c\":[true]}}", s.Version, s.Items)
	}
	if s.FetchedAt.Before(before.Round(0)) || s.FetchedAt.After(time.Now()) {
		t.Errorf("Fetch().FetchedAt = %v, want between %v and now", s.FetchedAt, before)
	}
	mu.Lock()
	defer mu.Unlock()
	if inm := got.Get("If-None-Match"); inm != "" {
		t.Errorf("Fetch() sent If-None-Match %q, want none", inm)
	}
	if a := got.Get("Accept"); a != "application/json" {
		t.Errorf("Fetch() sent Accept %q, want application/json", a)
	}
}

func TestHTTPSourceCheck(t *testing.T) {
	var (
		mu      sync.Mutex
		current = "2"
		sent    []string
	)
	src := serveSource(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		inm := r.Header.Get("If-None-Match")
		sent = append(sent, inm)
		if inm == `"`+current+`"` {
			w.Header().Set("ETag", `"`+current+`"`)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fixedAnswer(http.StatusOK, `"`+current+`"`, `{"v":`+current+`}`)(w, r)
	})

	s, err := src.Check(t.Context(), "2")
	if !errors.Is(err, ErrNotModified) || s != nil {
		t.Errorf(`Check("2") at version 2 = %v, %v, want nil, ErrNotModified`, s, err)
	}
	mu.Lock()
	current = "3"
	mu.Unlock()
	s, err = src.Check(t.Context(), "2")
	if err != nil || s.Version != "3" || string(s.Items["v"]) != "3" {
		t.Errorf(`Check("2") at version 3 = %+v, %v, want version 3`, s, err)
	}
	s, err = src.Check(t.Context(), "")
	if err != nil || s.Version != "3" {
		t.Errorf(`Check("") = %+v, %v, want version 3 as Fetch`, s, err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{`"2"`, `"2"`, ``}
	if strings.Join(sent, " ") != strings.Join(want, " ") {
		t.Errorf("If-None-Match sent = %q, want %q", sent, want)
	}
}

func TestHTTPSourceWeakETag(t *testing.T) {
	src := serveSource(t, fixedAnswer(http.StatusOK, `W/"abc"`, `{}`))
	s, err := src.Fetch(t.Context())
	if err != nil || s.Version != "abc" {
		t.Errorf(`Fetch() with ETag W/"abc" = %+v, %v, want version abc`, s, err)
	}
}

func TestHTTPSourceErrors(t *testing.T) {
	big := `{"k":"` + strings.Repeat("x", 100) + `"}`
	tests := []struct {
		name     string
		h        http.HandlerFunc
		maxBytes int64
		version  string // for Check; empty: Fetch
		want     string
	}{
		{name: "500", h: fixedAnswer(http.StatusInternalServerError, "", "boom"), want: `unexpected status 500 Internal Server Error: "boom"`},
		{name: "404", h: fixedAnswer(http.StatusNotFound, "", ""), want: "unexpected status 404 Not Found"},
		{name: "304 without a condition", h: fixedAnswer(http.StatusNotModified, `"1"`, ""), want: "unexpected status 304"},
		{name: "missing ETag", h: fixedAnswer(http.StatusOK, "", `{}`), want: "no ETag"},
		{name: "unquoted ETag", h: fixedAnswer(http.StatusOK, "7", `{}`), want: "malformed ETag"},
		{name: "empty ETag", h: fixedAnswer(http.StatusOK, `""`, `{}`), want: "malformed ETag"},
		{name: "ETag with a space", h: fixedAnswer(http.StatusOK, `"a b"`, `{}`), want: "malformed ETag"},
		{name: "bad JSON", h: fixedAnswer(http.StatusOK, `"1"`, `{"a":`), want: "decode body"},
		{name: "JSON array", h: fixedAnswer(http.StatusOK, `"1"`, `[1]`), want: "array"},
		{name: "JSON null", h: fixedAnswer(http.StatusOK, `"1"`, `null`), want: "null"},
		{name: "empty body", h: fixedAnswer(http.StatusOK, `"1"`, ``), want: "empty body"},
		{name: "oversize body", h: fixedAnswer(http.StatusOK, `"1"`, big), maxBytes: 64, want: "exceeds the limit of 64"},
		{name: "oversize chunked body", maxBytes: 64, want: "exceeds the limit of 64", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("ETag", `"1"`)
			w.Write([]byte(big[:50]))
			w.(http.Flusher).Flush() // no Content-Length: the limit must hold while reading
			w.Write([]byte(big[50:]))
		}},
		{name: "truncated body", want: "unexpected EOF", h: func(w http.ResponseWriter, r *http.Request) {
			// a Content-Length that lies: the connection ends early
			conn, rw, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Errorf("Hijack(): %v", err)
				return
			}
			defer conn.Close()
			rw.WriteString("HTTP/1.1 200 OK\r\nETag: \"1\"\r\nContent-Length: 100\r\n\r\n" + `{"a":1`)
			rw.Flush()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := serveSource(t, tt.h)
			src.MaxBytes = tt.maxBytes
			s, err := src.Check(t.Context(), tt.version)
			if err == nil {
				t.Fatalf("Check(%q) = version %q, want an error containing %q", tt.version, s.Version, tt.want)
			}
			if s != nil {
				t.Errorf("Check(%q) returned a snapshot with its error", tt.version)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "cache: get "+src.URL+": ") || !strings.Contains(msg, tt.want) {
				t.Errorf("Check(%q) error = %q, want \"cache: get %s: ...%s...\"", tt.version, msg, src.URL, tt.want)
			}
			if errors.Is(err, ErrNotModified) {
				t.Errorf("Check(%q) error %q is ErrNotModified", tt.version, msg)
			}
		})
	}
}

func TestHTTPSourceTimeout(t *testing.T) {
	tests := []struct {
		name string
		h    http.HandlerFunc
	}{
		{"no answer", func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}},
		{"body stalls", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("ETag", `"1"`)
			w.Header().Set("Content-Length", "100")
			w.Write([]byte(`{"a":`))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := serveSource(t, tt.h)
			src.Timeout = 50 * time.Millisecond
			start := time.Now()
			s, err := src.Fetch(t.Context())
			if err == nil {
				t.Fatalf("Fetch() from a source that hangs = version %q, want an error", s.Version)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("Fetch() took %v with a timeout of 50ms", took)
			}
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no complete answer within 50ms") {
				t.Errorf("Fetch() error = %q, want a deadline exceeded that names the 50ms timeout", err)
			}
		})
	}
}

func TestHTTPSourceCallerCancels(t *testing.T) {
	src := serveSource(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := src.Fetch(ctx)
	if !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "within") {
		t.Errorf("Fetch() with a cancelled context = %v, want context.Canceled without a timeout message", err)
	}
}

func TestHTTPSourceContentLengthOverLimit(t *testing.T) {
	// the server declares a huge body: refused from the header, before reading
	src := serveSource(t, func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Errorf("Hijack(): %v", err)
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 200 OK\r\nETag: \"1\"\r\nContent-Length: " + strconv.Itoa(1<<40) + "\r\n\r\n{")
		rw.Flush()
		bufio.NewReader(conn).ReadByte() // until the client hangs up
	})
	_, err := src.Fetch(t.Context())
	if err == nil || !strings.Contains(err.Error(), "body of 1099511627776 bytes exceeds the limit of 33554432") {
		t.Errorf("Fetch() of a 1 TiB body = %v, want the default limit of 32 MiB named", err)
	}
}

func TestHTTPSourceBadURL(t *testing.T) {
	src := &HTTPSource{URL: "http://127.0.0.1:1/data", Timeout: 5 * time.Second}
	_, err := src.Fetch(t.Context())
	if err == nil || !strings.HasPrefix(err.Error(), "cache: get http://127.0.0.1:1/data: ") || strings.Count(err.Error(), "/data") != 1 {
		t.Errorf("Fetch() from a closed port = %v, want an error naming the URL once", err)
	}
}
