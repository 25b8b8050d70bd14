package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Fuzz tests of the cache's decoders of what other processes send: chunks of
// a snapshot copied from a holder, refresh events, the change feed's events,
// and the remote source's answers. .ci/fuzz runs each for a bounded time.

// entry is a key-value entry with any value, as a writer to the bucket may leave.
type entry struct {
	jetstream.KeyValueEntry
	value []byte
	rev   uint64
}

func (e entry) Value() []byte    { return e.value }
func (e entry) Revision() uint64 { return e.rev }

// FuzzSharedRecord feeds a worker's decoder of the shared snapshot's records:
// what it accepts names a known cause, a valid version, and items whose digest is
// the one the record claims; and it encodes back to the same record.
func FuzzSharedRecord(f *testing.F) {
	s := mustSnapshot(f, "7", t0, `{"a":1,"b":"<&>\u2028"}`)
	f.Add([]byte(`{"by":"push",` + string(s.Encode()[1:])))
	f.Add([]byte(`{"by":"force",` + string(s.Encode()[1:])))
	f.Add([]byte(`{"by":"shout",` + string(s.Encode()[1:])))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"version":7}`))
	f.Add([]byte(`{"by":"push","version":"8","digest":"sha256:00","fetchedAt":"2026-01-01T00:00:00Z","items":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		sh := &Shared{}
		var rec record
		if json.Unmarshal(data, &rec) == nil && rec.Object != "" {
			return // items from the object store: not this decoder's input
		}
		got, err := sh.load(context.Background(), entry{value: data, rev: 3})
		if err != nil {
			return
		}
		if !refreshBy[got.By] || checkVersion(got.Version) != nil || got.Revision != 3 {
			t.Fatalf("load(%q) accepted cause %q, version %q, revision %d", data, got.By, got.Version, got.Revision)
		}
		if got.Digest != digestOf(got.itemsJSON()) {
			t.Fatalf("load(%q) accepted digest %s of items with digest %s", data, got.Digest, digestOf(got.itemsJSON()))
		}
		again, err := DecodeSnapshot(got.Encode())
		if err != nil || !bytes.Equal(again.itemsJSON(), got.itemsJSON()) {
			t.Fatalf("load(%q) = %s, which does not decode again the same: %v", data, got.Encode(), err)
		}
	})
}

// FuzzChangeEvent feeds the agent's decoder of the change feed's events.
func FuzzChangeEvent(f *testing.F) {
	for _, s := range []string{`{"version":"7"}`, `{"version":""}`, `{"version":7}`, `{}`, `null`, `[`,
		`{"version":"a b"}`, `{"version":"` + strings.Repeat("9", 257) + `"}`, `{"version":"\u0000"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := parseChange(data)
		if err == nil && checkVersion(v) != nil {
			t.Fatalf("parseChange(%q) = %q, not a valid version", data, v)
		}
	})
}

// answer is an http.RoundTripper that answers every request with one
// response, as a remote source would.
type answer struct {
	code       int
	etag, body string
	length     int64 // Content-Length; -1: unknown
}

func (a answer) RoundTrip(req *http.Request) (*http.Response, error) {
	h := make(http.Header)
	if a.etag != "" {
		h.Set("ETag", a.etag)
	}
	if a.length >= 0 {
		h.Set("Content-Length", strconv.FormatInt(a.length, 10))
	}
	return &http.Response{
		StatusCode: a.code, Status: strconv.Itoa(a.code), Header: h, ContentLength: a.length,
		Body: io.NopCloser(strings.NewReader(a.body)), Request: req,
	}, nil
}

// FuzzSourceResponse feeds the HTTP source any status, ETag, length and body:
// it never panics, and a snapshot it returns has the ETag's version and the
// body's items; anything else is an error (or ErrNotModified for a 304).
func FuzzSourceResponse(f *testing.F) {
	f.Add(200, `"7"`, `{"a":1}`, int64(-1), "")
	f.Add(200, `W/"7"`, `{"a":1}`, int64(7), "6")
	f.Add(304, `"7"`, ``, int64(0), "7")
	f.Add(304, `"7"`, ``, int64(0), "")
	f.Add(200, ``, `{"a":1}`, int64(-1), "")
	f.Add(200, `"a b"`, `{"a":1}`, int64(-1), "")
	f.Add(200, `"`, `{"a":1}`, int64(-1), "")
	f.Add(200, `"7"`, `{"a":1`, int64(-1), "")
	f.Add(200, `"7"`, `{"a":1}`, int64(1<<40), "")
	f.Add(200, `"7"`, strings.Repeat("[", 100), int64(-1), "")
	f.Add(500, `"7"`, `{"error":"boom"}`, int64(-1), "")
	f.Fuzz(func(t *testing.T, code int, etag, body string, length int64, have string) {
		if code < 100 || code > 999 {
			return // net/http never makes such a response
		}
		src := &HTTPSource{URL: "http://source/data", MaxBytes: 1 << 16, Client: &http.Client{Transport: answer{code, etag, body, length}}}
		s, err := src.Check(t.Context(), have)
		switch {
		case errors.Is(err, ErrNotModified):
			if code != http.StatusNotModified || have == "" {
				t.Fatalf("Check(%q) = ErrNotModified for a %d", have, code)
			}
		case err != nil:
			if s != nil {
				t.Fatalf("Check returned a snapshot and the error %v", err)
			}
		default:
			if code != http.StatusOK {
				t.Fatalf("Check accepted a %d", code)
			}
			if v, perr := parseETag(etag); perr != nil || s.Version != v {
				t.Fatalf("Check returned version %q for ETag %q (%v)", s.Version, etag, perr)
			}
			want, err := NewSnapshot(s.Version, time.Now(), []byte(body))
			if err != nil || !bytes.Equal(want.itemsJSON(), s.itemsJSON()) {
				t.Fatalf("Check returned %s for body %q (%v)", s.itemsJSON(), body, err)
			}
		}
	})
}
