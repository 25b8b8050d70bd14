package serve

import (
	"bytes"
	"path"
)

// maxFastHead is the longest request head the event loop reads itself; a
// longer one goes to net/http, whose limits apply.
const maxFastHead = 8 << 10

// parseResult is what parseFast made of the start of a connection's input.
type parseResult int

const (
	needMore parseResult = iota // no whole head yet, and no reason to give up
	fastGET                     // a request the loop answers: path and size are set
	handOver                    // anything else: net/http's to read
)

// parseFast reads the request head at the start of in. It answers fastGET
// only for a request whose meaning it fully knows: "GET <path> HTTP/1.1",
// path a clean absolute path (path.Clean leaves it as it is) of the bytes
// [A-Za-z0-9/._~-] only, so that net/http's URL.Path is the same string;
// header lines "Name: value" with token names and visible values, exactly one
// Host, of the bytes isHost takes, and none that gives the request a body or
// changes the connection (Content-Length, Transfer-Encoding, Connection,
// Upgrade, Expect, TE, Trailer). size is the head's length, up to its blank
// line. Everything else, even what net/http would take, is handOver: the loop
// never has to be right about a request it did not understand.
func parseFast(in []byte) (p []byte, size int, r parseResult) {
	end := bytes.Index(in, []byte("\r\n\r\n"))
	if end < 0 {
		if len(in) >= maxFastHead || bytes.IndexByte(in, '\n') >= 0 && !bytes.HasPrefix(in, []byte("GET /")) {
			return nil, 0, handOver
		}
		return nil, 0, needMore
	}
	if end+4 > maxFastHead {
		return nil, 0, handOver
	}
	head := in[:end+2] // every line with its CRLF
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	target, ok := bytes.CutPrefix(line, []byte("GET "))
	if !ok {
		return nil, 0, handOver
	}
	target, ok = bytes.CutSuffix(target, []byte(" HTTP/1.1"))
	if !ok || !cleanPath(target) {
		return nil, 0, handOver
	}
	hosts := 0
	for len(rest) > 0 {
		var h []byte
		h, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok || !isToken(name) || !isFieldValue(value) {
			return nil, 0, handOver
		}
		switch {
		case bytes.EqualFold(name, []byte("Host")):
			if !isHost(bytes.Trim(value, " \t")) {
				return nil, 0, handOver
			}
			hosts++
		case bytes.EqualFold(name, []byte("Content-Length")),
			bytes.EqualFold(name, []byte("Transfer-Encoding")),
			bytes.EqualFold(name, []byte("Connection")),
			bytes.EqualFold(name, []byte("Upgrade")),
			bytes.EqualFold(name, []byte("Expect")),
			bytes.EqualFold(name, []byte("TE")),
			bytes.EqualFold(name, []byte("Trailer")):
			return nil, 0, handOver
		}
	}
	if hosts != 1 {
		return nil, 0, handOver
	}
	return target, end + 4, fastGET
}

// cleanPath reports whether p is an absolute path that path.Clean keeps as
// it is, of unreserved bytes and slashes only (nothing to unescape, no query).
func cleanPath(p []byte) bool {
	if len(p) == 0 || p[0] != '/' || len(p) > maxFastHead {
		return false
	}
	for _, b := range p {
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '/' || b == '.' || b == '_' || b == '~' || b == '-') {
			return false
		}
	}
	return pathIsClean(p)
}

// pathIsClean is path.Clean(p) == p without an allocation for the common
// case: no "//", no "/." segment, no trailing slash but the root's.
func pathIsClean(p []byte) bool {
	if len(p) > 1 && p[len(p)-1] == '/' {
		return false
	}
	if !bytes.Contains(p, []byte("//")) && !bytes.Contains(p, []byte("/.")) {
		return true
	}
	return path.Clean(string(p)) == string(p)
}

// isHost reports whether h is made of the bytes [A-Za-z0-9.:[\]_-] only: a
// subset of those net/http's server takes in a Host (it answers 400 to
// others), enough for names, IPv4 and IPv6 addresses and ports.
func isHost(h []byte) bool {
	for _, c := range h {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || bytes.IndexByte([]byte(".-:[]_"), c) >= 0) {
			return false
		}
	}
	return true
}

// isToken reports whether b is an HTTP token (RFC 9110), as a header name.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c >= 0x80 || !tokenByte[c] {
			return false
		}
	}
	return true
}

var tokenByte = func() (t [128]bool) {
	for c := range 128 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), byte(c)) >= 0
	}
	return t
}()

// isFieldValue reports whether v is a header value of visible ASCII, spaces
// and tabs only (no control bytes, no obsolete line folding, no bytes of
// 0x80 and above, which net/http takes but this loop need not).
func isFieldValue(v []byte) bool {
	for _, c := range v {
		if c < 0x20 && c != '\t' || c >= 0x7f {
			return false
		}
	}
	return true
}
