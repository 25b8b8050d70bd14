package cache

import (
	"bufio"
	"bytes"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/yolkgo/yolk/prom"
)

// lockedBuffer is a bytes.Buffer safe for concurrent writes (a server's error log).
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// rawExchange writes request as it is on a new connection to addr and reads
// the response (of a HEAD when head is set).
func rawExchange(t *testing.T, addr, request string, head bool) (*http.Response, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	// write while reading: the server may answer (431) before it read everything
	written := make(chan error, 1)
	go func() { _, err := io.WriteString(conn, request); written <- err }()
	method := http.MethodGet
	if head {
		method = http.MethodHead
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%.60q: read response: %v", request, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%.60q: read body: %v", request, err)
	}
	conn.Close() // ends the write if the server stopped reading
	<-written
	return resp, string(body)
}

// TestHandlerOddRequests sends the data API, over real HTTP, requests with
// long, encoded, odd or hostile paths, methods and headers: none makes it
// panic, and each gets the status net/http or the handler gives it.
func TestHandlerOddRequests(t *testing.T) {
	var st Store
	atMax := strings.Repeat("m", MaxKeyLen)
	st.Swap(mustSnapshot(t, "12", t0, `{"a":"A","a/b":"slash","/lead":"lead","é":"e","sp ace":"space","`+atMax+`":"max","a\u0000b":"nul"}`))
	srv := httptest.NewUnstartedServer(NewHandler(&st, "w1", NewMetrics(prom.NewRegistry())))
	errLog := &lockedBuffer{}
	srv.Config.ErrorLog = log.New(errLog, "", 0)
	srv.Start()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()

	get := func(target string) string {
		return "GET " + target + " HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n"
	}
	with := func(method, target string) string {
		return method + " " + target + " HTTP/1.1\r\nHost: w\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
	}
	manyHeaders := "GET /data/a HTTP/1.1\r\nHost: w\r\n" + strings.Repeat("X-H: 0123456789012345678901234567890123456789\r\n", 30000) + "\r\n"
	tests := []struct {
		name, request string
		code          int
		body          string // "": not checked
	}{
		{"a key", get("/data/a"), 200, `"A"`},
		{"a key of MaxKeyLen bytes", get("/data/" + atMax), 200, `"max"`},
		{"a key of 8 KiB", get("/data/" + strings.Repeat("k", 8<<10)), 404, `{"error":"no such key"}`},
		{"a key of 64 KiB", get("/data/" + strings.Repeat("k", 64<<10)), 404, `{"error":"no such key"}`},
		{"a path of 2 MiB", get("/data/" + strings.Repeat("k", 2<<20)), 431, ""},
		{"an encoded slash", get("/data/a%2Fb"), 200, `"slash"`},
		{"a slash in the key", get("/data/a/b"), 200, `"slash"`},
		{"an encoded leading slash", get("/data/%2Flead"), 200, `"lead"`},
		{"a double slash", get("/data//lead"), 200, `"lead"`},
		{"an encoded NUL", get("/data/a%00b"), 200, `"nul"`},
		{"only a NUL", get("/data/%00"), 404, `{"error":"no such key"}`},
		{"an invalid escape", get("/data/%zz"), 400, ""},
		{"a cut escape", get("/data/a%2"), 400, ""},
		{"a lone percent", get("/data/%"), 400, ""},
		{"a dot segment", get("/data/./a"), 404, `{"error":"no such key"}`},
		{"a dot-dot segment", get("/data/../data/a"), 404, `{"error":"no such key"}`},
		{"an encoded dot-dot", get("/data/%2e%2e/a"), 404, `{"error":"no such key"}`},
		{"escaping the API", get("/data/../../etc/passwd"), 404, `{"error":"no such key"}`},
		{"raw UTF-8", get("/data/é"), 200, `"e"`},
		{"encoded UTF-8", get("/data/%C3%A9"), 200, `"e"`},
		{"invalid UTF-8", get("/data/%ff%fe"), 404, `{"error":"no such key"}`},
		{"an encoded space", get("/data/sp%20ace"), 200, `"space"`},
		{"a query string", get("/data/a?x=1&y=%zz&a=b"), 200, `"A"`},
		{"a query string on the whole set", get("/data?version=1"), 200, ""},
		{"a fragment", get("/data/a#frag"), 404, `{"error":"no such key"}`},
		{"absolute form", get("http://w/data/a"), 200, `"A"`},
		{"not a path", get("data/a"), 400, ""},
		{"another path", get("/etc/passwd"), 404, `{"error":"not found"}`},
		{"HEAD", "HEAD /data/a HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", 200, ""},
		{"POST", with("POST", "/data/a"), 405, `{"error":"method not allowed"}`},
		{"PUT", with("PUT", "/data/a"), 405, `{"error":"method not allowed"}`},
		{"DELETE", with("DELETE", "/data/a"), 405, `{"error":"method not allowed"}`},
		{"PATCH", with("PATCH", "/data"), 405, `{"error":"method not allowed"}`},
		{"OPTIONS", with("OPTIONS", "/data/a"), 405, `{"error":"method not allowed"}`},
		{"a made-up method", with("BREW", "/data/a"), 405, `{"error":"method not allowed"}`},
		{"an invalid method", with("G(T", "/data/a"), 400, ""},
		{"a POST with a body", "POST /data HTTP/1.1\r\nHost: w\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", 405, `{"error":"method not allowed"}`},
		{"a header of 2 MiB", "GET /data/a HTTP/1.1\r\nHost: w\r\nX-Big: " + strings.Repeat("b", 2<<20) + "\r\n\r\n", 431, ""},
		{"30000 headers", manyHeaders, 431, ""},
		{"no Host in HTTP/1.1", "GET /data/a HTTP/1.1\r\nConnection: close\r\n\r\n", 400, ""},
		{"HTTP/1.0 without Host", "GET /data/a HTTP/1.0\r\n\r\n", 200, `"A"`},
		{"a control character in the path", get("/data/a\x01b"), 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := rawExchange(t, addr, tt.request, strings.HasPrefix(tt.request, "HEAD "))
			if resp.StatusCode != tt.code {
				t.Errorf("%s: status %d, want %d (body %.80q)", tt.name, resp.StatusCode, tt.code, body)
			}
			if tt.body != "" && strings.TrimSuffix(body, "\n") != tt.body {
				t.Errorf("%s: body %.80q, want %q", tt.name, body, tt.body)
			}
			handled := resp.StatusCode == 200 || resp.StatusCode == 404 || resp.StatusCode == 405
			if handled && (resp.Header.Get(HeaderWorker) != "w1" || resp.Header.Get(HeaderVersion) != "12") {
				t.Errorf("%s: headers %v, want %s w1 and %s 12", tt.name, resp.Header, HeaderWorker, HeaderVersion)
			}
			if resp.StatusCode == 405 && resp.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s: Allow %q, want \"GET, HEAD\"", tt.name, resp.Header.Get("Allow"))
			}
		})
	}
	if strings.Contains(errLog.String(), "panic") {
		t.Errorf("the server logged a panic:\n%s", errLog)
	}

	// and it still answers
	resp, body := rawExchange(t, addr, get("/data/a"), false)
	if resp.StatusCode != 200 || body != `"A"` {
		t.Errorf("GET /data/a after the odd requests = %d %q, want 200 \"A\"", resp.StatusCode, body)
	}
}
