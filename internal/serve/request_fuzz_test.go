package serve

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// pathServer is a net/http server whose handler answers each request with its
// URL's path: what net/http makes of a request head, status included.
func pathServer(tb testing.TB) string {
	tb.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	}))
	tb.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// answerOf sends head to the server at addr and returns its answer's status
// and body.
func answerOf(tb testing.TB, addr string, head []byte) (int, string) {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(head); err != nil {
		tb.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		tb.Fatalf("answer to %q: %v", head, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("answer to %q: %v", head, err)
	}
	return resp.StatusCode, string(body)
}

// FuzzParseFast: a request head parseFast takes as a fast GET is one
// net/http reads as the same GET of the same path, with no body, keeping the
// connection open, and its server answers; anything else it hands over (or
// waits for more of).
func FuzzParseFast(f *testing.F) {
	for _, s := range []string{
		"GET /data/k1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /data/k1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\nGET /data/k2 HTTP/1.1\r\n",
		"GET /data/a/b HTTP/1.1\r\nhost: x\r\nConnection: close\r\n\r\n",
		"GET /data/k1?x HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /data/./k HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n Host: y\r\n\r\n",
		"HEAD /data/k1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /data/k1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
		"GET /data/k1 HTTP/1.1\nHost: x\n\n",
		"GET /data/k1 HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
		"GET /data/k1 HTTP/1.1\r\nHost: a b\r\n\r\n",
		"GET /data/k1 HTTP/1.1\r\nHost: <x>\r\n\r\n",
		"GET /data/k1 HTTP/1.1\r\nHost:\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	addr := pathServer(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		path, size, r := parseFast(in)
		if r != fastGET {
			return
		}
		br := bufio.NewReaderSize(bytes.NewReader(in), len(in)+16) // reads it all at once
		req, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("parseFast took %q as GET %q; net/http: %v", in, path, err)
		}
		if req.Method != http.MethodGet || req.URL.Path != string(path) || req.URL.RawQuery != "" || req.ProtoMinor != 1 || req.ProtoMajor != 1 {
			t.Fatalf("parseFast took %q as GET %q; net/http read %s %q (query %q) %s", in, path, req.Method, req.URL.Path, req.URL.RawQuery, req.Proto)
		}
		if req.ContentLength != 0 || len(req.TransferEncoding) > 0 || req.Close {
			t.Fatalf("parseFast took %q as a fast GET; net/http: body %d %v, close %v", in, req.ContentLength, req.TransferEncoding, req.Close)
		}
		if br.Buffered() != len(in)-size {
			t.Fatalf("parseFast took %d bytes of %q as the head; net/http left %d of %d", size, in, br.Buffered(), len(in))
		}
		if status, body := answerOf(t, addr, in[:size]); status != http.StatusOK || body != string(path) {
			t.Fatalf("parseFast took %q as GET %q; net/http's server answered %d %q", in, path, status, body)
		}
	})
}

// TestParseFastHost: the loop takes a Host only of bytes net/http's server
// takes too; it hands over the others, of which net/http answers some with 400.
func TestParseFastHost(t *testing.T) {
	addr := pathServer(t)
	for _, tc := range []struct {
		host   string
		fast   bool
		status int // net/http's answer
	}{
		{"x", true, 200},
		{"example.com", true, 200},
		{"example.com:8080", true, 200},
		{"127.0.0.1:80", true, 200},
		{"[::1]:8080", true, 200},
		{"my_host-1", true, 200},
		{"", true, 200},
		{"a b", false, 400},
		{"<x>", false, 400},
		{`a"b`, false, 400},
		{"a{b}", false, 400},
		{`a\b`, false, 400},
		{"a/b", false, 400},
		{"a,b", false, 200}, // net/http takes it; the loop need not
		{"a~b", false, 200},
	} {
		head := []byte("GET /data/k1 HTTP/1.1\r\nHost: " + tc.host + "\r\n\r\n")
		if _, _, r := parseFast(head); (r == fastGET) != tc.fast {
			t.Errorf("parseFast(Host: %q) = %v, want fast %v", tc.host, r, tc.fast)
		}
		if status, _ := answerOf(t, addr, head); status != tc.status {
			t.Errorf("net/http answers Host: %q with %d, want %d", tc.host, status, tc.status)
		}
	}
}
