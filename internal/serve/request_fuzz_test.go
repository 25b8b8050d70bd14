package serve

import (
	"bufio"
	"bytes"
	"net/http"
	"testing"
)

// FuzzParseFast: a request head parseFast takes as a fast GET is one
// net/http reads as the same GET of the same path, with no body, keeping the
// connection open; anything else it hands over (or waits for more of).
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
	} {
		f.Add([]byte(s))
	}
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
	})
}
