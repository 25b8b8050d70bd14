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

	"github.com/yolkgo/yolk/bus"
)

// Fuzz tests of the cache's decoders of what other processes send: chunks of
// a snapshot copied from a holder, refresh events, the change feed's events,
// and the remote source's answers. .ci/fuzz runs each for a bounded time.

// chunkAnswers is an asker that answers with the given replies in turn, and
// then fails, as a holder that has gone.
func chunkAnswers(replies [][]byte) (asker, *int) {
	asked := 0
	return func(_ context.Context, _ chunkRequest) (bus.Message, error) {
		if asked >= len(replies) {
			return bus.Message{}, errors.New("the holder is gone")
		}
		asked++
		return bus.Message{Event: EventSnapshot, From: "w9", Data: replies[asked-1]}, nil
	}, &asked
}

func chunkReplies(t testing.TB, rs ...chunkReply) []byte {
	var b bytes.Buffer
	for _, r := range rs {
		line, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// FuzzCopyFrom feeds copyFrom the answers of a holder that may lie (one JSON
// chunkReply per line): it must never panic nor allocate what a holder only
// claims, ask at most once per answer and once more, and return a snapshot only
// when the chunks make a whole, valid one.
func FuzzCopyFrom(f *testing.F) {
	s := mustSnapshot(f, "7", t0, `{"a":[1,2],"b":"x"}`)
	enc := s.Encode()
	half := len(enc) / 2
	ok := chunkReply{Version: "7", FetchedAt: t0, Total: len(enc), Data: enc}
	f.Add(chunkReplies(f, ok))
	f.Add(chunkReplies(f, chunkReply{Version: "7", FetchedAt: t0, Total: len(enc), Data: enc[:half]},
		chunkReply{Version: "7", FetchedAt: t0, Total: len(enc), Offset: half, Data: enc[half:]}))
	f.Add(chunkReplies(f, chunkReply{Version: "7", Current: true}))
	f.Add(chunkReplies(f, chunkReply{}))
	f.Add(chunkReplies(f, chunkReply{Version: "7", Total: -1, Data: enc}))
	f.Add(chunkReplies(f, chunkReply{Version: "7", Total: 1 << 40, Data: enc}))
	f.Add(chunkReplies(f, chunkReply{Version: "7", Total: 1 << 62, Data: []byte("{")}))
	f.Add(chunkReplies(f, chunkReply{Version: "7", Total: 3, Offset: -5, Data: enc}))
	f.Add(chunkReplies(f, chunkReply{Version: "7", Total: 10}))
	f.Add(chunkReplies(f, chunkReply{Version: "7", Total: len(enc), Data: enc[:half]}, chunkReply{Version: "7", Total: len(enc), Offset: 1, Data: enc}))
	f.Add(chunkReplies(f, chunkReply{Version: "7", Total: len(enc), Data: []byte(strings.Repeat("x", len(enc)))}))
	f.Add([]byte("{\"version\":\"7\",\"total\":4,\"data\":\"not base64\"}\nnull\n[]\n"))
	f.Fuzz(func(t *testing.T, answers []byte) {
		var replies [][]byte
		for line := range bytes.Lines(answers) {
			replies = append(replies, bytes.TrimRight(line, "\n"))
		}
		ask, asked := chunkAnswers(replies)
		got, err := copyFrom(t.Context(), ask, "w9", "6")
		if *asked > len(replies)+1 {
			t.Fatalf("copyFrom asked %d times for %d answers", *asked, len(replies))
		}
		if err != nil {
			if got != nil {
				t.Fatalf("copyFrom returned a snapshot and the error %v", err)
			}
			return
		}
		if got == nil {
			return // the holder said we are current
		}
		again, err := DecodeSnapshot(got.Encode())
		if err != nil || again.Version != got.Version {
			t.Fatalf("copyFrom returned %s, which does not decode again: %v", got.Encode(), err)
		}
	})
}

// FuzzRefreshEvent feeds a worker's decoder of refresh events: what it
// accepts names a known cause, a valid version, and a holder that can be
// asked (or carries the snapshot), and its inline snapshot decodes or is
// rejected without a panic.
func FuzzRefreshEvent(f *testing.F) {
	s := mustSnapshot(f, "7", t0, `{"a":1}`)
	for _, r := range []Refresh{
		announce(s, "push", "a1"),
		{By: "pull", Version: "7", Holder: "a1"},
		{By: "force", Version: "8", FetchedAt: t0, Holder: "w2"},
		{By: "shout", Version: "8", Holder: "a1"},
		{By: "push", Version: "a b", Holder: "a1"},
		{By: "push", Version: "8", Holder: "a.b"},
		{By: "push", Version: "8", Holder: "a1", Snapshot: json.RawMessage(`"garbage"`)},
		{By: "push", Version: "8", Holder: "a1", Snapshot: json.RawMessage(`{"version":"8","items":[]}`)},
	} {
		b, err := json.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`null`))
	f.Add([]byte(`{"version":7}`))
	f.Add([]byte(`{"by":"push","version":"` + strings.Repeat("v", 300) + `","holder":"a1"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeRefresh(data)
		if err != nil {
			return
		}
		if !refreshBy[r.By] || checkVersion(r.Version) != nil {
			t.Fatalf("decodeRefresh(%q) accepted cause %q, version %q", data, r.By, r.Version)
		}
		if len(r.Snapshot) == 0 {
			if bus.ValidID(r.Holder) != nil {
				t.Fatalf("decodeRefresh(%q) accepted holder %q with no inline snapshot", data, r.Holder)
			}
			return
		}
		stale(r, s)
		if got, err := DecodeSnapshot(r.Snapshot); err == nil && checkVersion(got.Version) != nil {
			t.Fatalf("inline snapshot of %q decoded with version %q", data, got.Version)
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
