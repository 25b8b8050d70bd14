package e2e

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawHTTP writes request as it is on a new connection to addr and returns
// the response's status, Location header and body.
func rawHTTP(t *testing.T, addr, request string) (int, string, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	written := make(chan struct{})
	go func() { // the server may answer (431) before it has read everything
		defer close(written)
		io.WriteString(conn, request)
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%.60q: %v", request, err)
	}
	body, _ := io.ReadAll(resp.Body)
	conn.Close()
	<-written
	return resp.StatusCode, resp.Header.Get("Location"), string(body)
}

// TestOddHTTPRequests sends a running worker (on the shared port, behind
// its router) requests with long, encoded or odd paths, other methods and
// huge headers: each gets the status net/http or the API gives it, nothing
// panics, and no worker is restarted.
func TestOddHTTPRequests(t *testing.T) {
	m := startMaster(t)
	base := m.waitReady(t)
	addr := strings.TrimPrefix(base, "http://")
	before := m.status(t)

	line := func(target string) string {
		return "GET " + target + " HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n"
	}
	tests := []struct {
		name, request string
		code          int
		location      string // of a redirect
		body          string // "": not checked
	}{
		{"a key", line("/data/k1"), 200, "", ""},
		{"a query string", line("/data/k1?x=1&y=%zz"), 200, "", ""},
		{"a key of 8 KiB", line("/data/" + strings.Repeat("k", 8<<10)), 404, "", `{"error":"no such key"}`},
		{"a path of 2 MiB", line("/data/" + strings.Repeat("k", 2<<20)), 431, "", ""},
		{"a header of 2 MiB", "GET /data HTTP/1.1\r\nHost: w\r\nX-Big: " + strings.Repeat("b", 2<<20) + "\r\n\r\n", 431, "", ""},
		{"an invalid escape", line("/data/%zz"), 400, "", ""},
		{"an encoded NUL", line("/data/%00"), 404, "", `{"error":"no such key"}`},
		{"an encoded slash", line("/data/a%2Fb"), 404, "", `{"error":"no such key"}`},
		{"dot-dot out of the API", line("/data/../metrics"), http.StatusTemporaryRedirect, "/metrics", ""},
		{"dot-dot out of the root", line("/data/../../../etc/passwd"), http.StatusTemporaryRedirect, "/etc/passwd", ""},
		{"a double slash", line("/data//k1"), http.StatusTemporaryRedirect, "/data/k1", ""},
		{"unicode", line("/data/%C3%A9%E2%9C%93"), 404, "", `{"error":"no such key"}`},
		{"POST", "POST /data HTTP/1.1\r\nHost: w\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", 405, "", `{"error":"method not allowed"}`},
		{"DELETE", "DELETE /data/k1 HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", 405, "", `{"error":"method not allowed"}`},
		{"POST to the metrics", "POST /metrics HTTP/1.1\r\nHost: w\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 405, "", ""},
		{"an invalid method", "G(T /data HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", 400, "", ""},
		{"no Host", "GET /data HTTP/1.1\r\nConnection: close\r\n\r\n", 400, "", ""},
	}
	for _, tt := range tests {
		code, location, body := rawHTTP(t, addr, tt.request)
		if code != tt.code || location != tt.location || (tt.body != "" && strings.TrimSpace(body) != tt.body) {
			t.Errorf("%s: %d %q %.80q, want %d %q %q", tt.name, code, location, body, tt.code, tt.location, tt.body)
		}
	}

	after := m.status(t)
	if !after.allReady(2) || !sameInts(after.pids("worker"), before.pids("worker")) {
		t.Errorf("workers after the odd requests: %v, want the same two ready: %v", after.pids("worker"), before.pids("worker"))
	}
	if code, _, err := get(http.DefaultClient, base+"/data/k1"); err != nil || code != 200 {
		t.Errorf("GET /data/k1 after the odd requests = %d, %v; want 200", code, err)
	}
	if log := m.logs.String(); strings.Contains(log, "panic") {
		t.Errorf("the log shows a panic:\n%s", log)
	}
}

func sameInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !containsInt(b, x) {
			return false
		}
	}
	return true
}
