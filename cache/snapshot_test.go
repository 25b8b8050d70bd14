package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

var t0 = time.Date(2025, 11, 26, 7, 0, 0, 123456789, time.UTC)

// mustSnapshot makes a snapshot or fails the test.
func mustSnapshot(t testing.TB, version string, fetchedAt time.Time, body string) *Snapshot {
	t.Helper()
	s, err := NewSnapshot(version, fetchedAt, []byte(body))
	if err != nil {
		t.Fatalf("NewSnapshot(%q, %q): %v", version, body, err)
	}
	return s
}

func TestNewSnapshot(t *testing.T) {
	tests := []struct {
		name, version, body string
		want                map[string]string // nil: an error is expected
		wantErr             string
	}{
		{name: "flat", version: "1", body: `{"a":1,"b":"x"}`, want: map[string]string{"a": `1`, "b": `"x"`}},
		{name: "empty object", version: "1", body: `{}`, want: map[string]string{}},
		{name: "white space", version: "1", body: " \n{ \"a\" : [ 1 , 2 ] ,\t\"b\" : { \"c\" : null } }\r\n",
			want: map[string]string{"a": `[1,2]`, "b": `{"c":null}`}},
		{name: "nested kept", version: "v7", body: `{"k":{"deep":[{"x":[true,false,null,1.5e3,"s"]}]}}`,
			want: map[string]string{"k": `{"deep":[{"x":[true,false,null,1.5e3,"s"]}]}`}},
		{name: "escapes kept", version: "1", body: `{"a\"b":"<\u00e9>\n","\u00e9":"\ud83d\ude00"}`,
			want: map[string]string{`a"b`: `"<\u00e9>\n"`, "é": `"\ud83d\ude00"`}},
		{name: "empty key", version: "1", body: `{"":0}`, want: map[string]string{"": `0`}},
		{name: "duplicate key: last wins", version: "1", body: `{"a":1,"a":2}`, want: map[string]string{"a": `2`}},
		{name: "invalid JSON", version: "1", body: `{"a":}`, wantErr: "decode body"},
		{name: "truncated", version: "1", body: `{"a":1`, wantErr: "decode body"},
		{name: "trailing garbage", version: "1", body: `{"a":1} x`, wantErr: "decode body"},
		{name: "two objects", version: "1", body: `{}{}`, wantErr: "decode body"},
		{name: "array", version: "1", body: `[1,2]`, wantErr: "array"},
		{name: "null", version: "1", body: `null`, wantErr: "null"},
		{name: "string", version: "1", body: `"a"`, wantErr: "not a JSON object"},
		{name: "number", version: "1", body: `12`, wantErr: "not a JSON object"},
		{name: "empty body", version: "1", body: ``, wantErr: "empty body"},
		{name: "only white space", version: "1", body: " \n", wantErr: "empty body"},
		{name: "invalid UTF-8", version: "1", body: "{\"a\":\"\xff\"}", wantErr: "UTF-8"},
		{name: "empty version", version: "", body: `{}`, wantErr: "empty version"},
		{name: "quote in version", version: `a"b`, body: `{}`, wantErr: "invalid version"},
		{name: "space in version", version: "a b", body: `{}`, wantErr: "invalid version"},
		{name: "newline in version", version: "a\nb", body: `{}`, wantErr: "invalid version"},
		{name: "long version", version: strings.Repeat("v", maxVersion+1), body: `{}`, wantErr: "longer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSnapshot(tt.version, t0, []byte(tt.body))
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("NewSnapshot(%q, %q) = %v, want an error containing %q", tt.version, tt.body, s.Items, tt.wantErr)
				}
				if s != nil {
					t.Errorf("NewSnapshot(%q, %q) returned a snapshot with its error", tt.version, tt.body)
				}
				if !strings.HasPrefix(err.Error(), "cache: ") || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("NewSnapshot(%q, %q) error = %q, want prefix \"cache: \" and %q", tt.version, tt.body, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewSnapshot(%q, %q): %v", tt.version, tt.body, err)
			}
			got := make(map[string]string, len(s.Items))
			for k, v := range s.Items {
				got[k] = string(v)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("NewSnapshot(%q, %q).Items = %q, want %q", tt.version, tt.body, got, tt.want)
			}
			if s.Version != tt.version || !s.FetchedAt.Equal(t0) || s.By != "" || !s.UpdatedAt.IsZero() {
				t.Errorf("NewSnapshot(%q, ...) = {Version %q, FetchedAt %v, By %q, UpdatedAt %v}, want {%q, %v, \"\", zero}",
					tt.version, s.Version, s.FetchedAt, s.By, s.UpdatedAt, tt.version, t0)
			}
		})
	}
}

func TestNewSnapshotDoesNotKeepBody(t *testing.T) {
	body := []byte(`{"a":"x"}`)
	s := mustSnapshot(t, "1", t0, string(body))
	copy(body, `{"a":"y"}`)
	if got := string(s.Items["a"]); got != `"x"` {
		t.Errorf("Items[a] after the body changed = %s, want \"x\"", got)
	}
}

func TestNewSnapshotStripsMonotonicClock(t *testing.T) {
	now := time.Now()
	s := mustSnapshot(t, "1", now, `{}`)
	if s.FetchedAt != now.Round(0) {
		t.Errorf("FetchedAt = %v, want %v without a monotonic reading", s.FetchedAt, now.Round(0))
	}
}

func TestItemsDoNotShareCapacity(t *testing.T) {
	s := mustSnapshot(t, "1", t0, `{"a":1,"b":2}`)
	a := s.Items["a"]
	_ = append(a, '9') // must reallocate, not overwrite the next bytes
	if got := string(s.Items["b"]); got != "2" {
		t.Errorf("Items[b] after appending to Items[a] = %s, want 2", got)
	}
	if got := string(s.Encode()); !json.Valid(s.Encode()) {
		t.Errorf("Encode() after appending to Items[a] = %s, not valid JSON", got)
	}
}

func TestEncodeDecode(t *testing.T) {
	bodies := []string{
		`{}`,
		`{"a":1}`,
		`{"b":[1,{"c":"d"}],"a":null,"":"","é\n":"\u2028<&>"}`,
		`{"big":"` + strings.Repeat("x", 100_000) + `"}`,
	}
	zones := []*time.Location{time.UTC, time.FixedZone("x", 5*3600+1800)}
	for i, body := range bodies {
		for _, loc := range zones {
			s := mustSnapshot(t, fmt.Sprintf("v%d", i), t0.In(loc), body).WithBy("push", t0.Add(time.Second))
			enc := s.Encode()
			if !json.Valid(enc) {
				t.Fatalf("Encode() = %.200s, not valid JSON", enc)
			}
			got, err := DecodeSnapshot(enc)
			if err != nil {
				t.Fatalf("DecodeSnapshot(Encode()): %v", err)
			}
			if got.Version != s.Version || !got.FetchedAt.Equal(s.FetchedAt) || !reflect.DeepEqual(got.Items, s.Items) {
				t.Errorf("DecodeSnapshot(Encode()) = {%q, %v, %.100q}, want {%q, %v, %.100q}",
					got.Version, got.FetchedAt, got.Items, s.Version, s.FetchedAt, s.Items)
			}
			if got.By != "" || !got.UpdatedAt.IsZero() {
				t.Errorf("DecodeSnapshot(Encode()) = {By %q, UpdatedAt %v}, want them empty", got.By, got.UpdatedAt)
			}
			if !bytes.Equal(got.Encode(), enc) {
				t.Errorf("Encode() after a round trip = %.200s, want %.200s", got.Encode(), enc)
			}
		}
	}
}

func TestEncodeIsSortedAndShared(t *testing.T) {
	s := mustSnapshot(t, "42", t0, `{"b": 2, "a": [1, 2]}`)
	// the digest is sha256 of {"a":[1,2],"b":2}
	want := `{"version":"42","digest":"sha256:68b7e88ecdcf999e2736835f0354c02ff937e5c4222e67f38d1fa2682a5c15aa","fetchedAt":"2025-11-26T07:00:00.123456789Z","items":{"a":[1,2],"b":2}}`
	if got := string(s.Encode()); got != want {
		t.Errorf("Encode() = %s, want %s", got, want)
	}
	if a, b := s.Encode(), s.WithBy("force", t0).Encode(); &a[0] != &b[0] {
		t.Errorf("Encode() of a WithBy copy did not reuse the snapshot's bytes")
	}
	if n := testing.AllocsPerRun(100, func() { s.Encode() }); n != 0 {
		t.Errorf("Encode() allocates %v times, want 0", n)
	}
}

func TestDecodeSnapshotErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"not JSON", `x`, "decode snapshot"},
		{"array", `[]`, "decode snapshot"},
		{"no fetchedAt", `{"version":"1","items":{}}`, "no fetchedAt"},
		{"bad fetchedAt", `{"version":"1","fetchedAt":"yesterday","items":{}}`, "decode snapshot"},
		{"no items", `{"version":"1","fetchedAt":"2025-11-26T07:00:00Z"}`, "no items"},
		{"null items", `{"version":"1","fetchedAt":"2025-11-26T07:00:00Z","items":null}`, "null"},
		{"array items", `{"version":"1","fetchedAt":"2025-11-26T07:00:00Z","items":[]}`, "array"},
		{"no version", `{"fetchedAt":"2025-11-26T07:00:00Z","items":{}}`, "empty version"},
		{"bad version", `{"version":"a b","fetchedAt":"2025-11-26T07:00:00Z","items":{}}`, "invalid version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := DecodeSnapshot([]byte(tt.in))
			if err == nil {
				t.Fatalf("DecodeSnapshot(%s) = %+v, want an error", tt.in, s)
			}
			if !strings.HasPrefix(err.Error(), "cache: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("DecodeSnapshot(%s) error = %q, want prefix \"cache: \" and %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestWithBy(t *testing.T) {
	s := mustSnapshot(t, "3", t0, `{"a":1}`)
	now := t0.Add(time.Minute)
	c := s.WithBy("pull", now)
	if c.By != "pull" || !c.UpdatedAt.Equal(now) {
		t.Errorf("WithBy(pull, %v) = {By %q, UpdatedAt %v}", now, c.By, c.UpdatedAt)
	}
	if s.By != "" || !s.UpdatedAt.IsZero() {
		t.Errorf("WithBy changed the original: {By %q, UpdatedAt %v}", s.By, s.UpdatedAt)
	}
	if c.Version != s.Version || !c.FetchedAt.Equal(s.FetchedAt) || &c.Items["a"][0] != &s.Items["a"][0] {
		t.Errorf("WithBy copy does not share version, fetchedAt and items with the original")
	}
	if c.Revision != s.Revision || c.Digest != s.Digest {
		t.Errorf("WithBy copy at revision %d, digest %s; want the original's %d, %s", c.Revision, c.Digest, s.Revision, s.Digest)
	}
	prefix, _, _ := c.data()
	if !bytes.Contains(prefix, []byte(`"lastUpdateBy":"pull","updatedAt":"2025-11-26T07:01:00.123456789Z"`)) {
		t.Errorf("data prefix of the WithBy copy = %s, want its By and UpdatedAt", prefix)
	}
}

// Regression (issue 12): snapshots were ordered by the wall-clock time of their
// fetch, so after the clock stepped back every new fetch looked older and was
// refused, and one stamped in the future blocked all real data. Only the
// revision orders them now: fetch times an hour either way change nothing.
func TestStoreSwapIgnoresClocks(t *testing.T) {
	at := func(version string, rev uint64, d time.Duration) *Snapshot {
		s := mustSnapshot(t, version, t0.Add(d), `{"v":"`+version+`"}`)
		return s.withRevision(rev)
	}
	var st Store
	steps := []struct {
		name string
		s    *Snapshot
		want bool
	}{
		{"first", at("1", 1, 0), true},
		{"clock stepped back an hour", at("2", 2, -time.Hour), true},
		{"clock stepped forward an hour", at("3", 3, time.Hour), true},
		{"clock back again", at("4", 4, 0), true},
		{"older revision fetched later", at("0", 3, 2*time.Hour), false},
	}
	for _, step := range steps {
		if got := st.Swap(step.s); got != step.want {
			t.Errorf("%s: Swap() = %v, want %v", step.name, got, step.want)
		}
	}
	if got := st.Load(); got.Version != "4" {
		t.Errorf("after the steps the store holds %s, want 4", got.Version)
	}
}

func TestStoreSwap(t *testing.T) {
	var st Store
	if s := st.Load(); s != nil {
		t.Fatalf("Load() on an empty store = %v, want nil", s)
	}
	if st.Swap(nil) {
		t.Errorf("Swap(nil) on an empty store = true, want false")
	}
	s1 := mustSnapshot(t, "1", t0, `{}`).withRevision(1)
	s2 := mustSnapshot(t, "2", t0.Add(-time.Second), `{}`).withRevision(2)
	steps := []struct {
		name string
		s    *Snapshot
		want bool
		cur  *Snapshot
	}{
		{"first", s1, true, s1},
		{"same again", s1, false, s1},
		{"newer", s2, true, s2},
		{"older", s1, false, s2},
		{"relabelled current", s2.WithBy("force", t0), false, s2},
		{"nil", nil, false, s2},
	}
	for _, step := range steps {
		if got := st.Swap(step.s); got != step.want {
			t.Errorf("%s: Swap() = %v, want %v", step.name, got, step.want)
		}
		if got := st.Load(); got != step.cur {
			t.Errorf("%s: Load() = version %q, want %q", step.name, got.Version, step.cur.Version)
		}
	}
}

func TestStoreSwapConcurrent(t *testing.T) {
	const goroutines, each = 32, 200
	var st Store
	var (
		mu     sync.Mutex
		newest *Snapshot
	)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			var mine *Snapshot
			for i := range each {
				rev := uint64(rng.IntN(1_000_000))*goroutines*each + uint64(g*each+i) + 1 // unique
				s := &Snapshot{Version: fmt.Sprintf("%d-%d", g, i), Revision: rev}
				if st.Swap(s) && st.Load() == nil {
					t.Errorf("Load() after a successful Swap = nil")
				}
				if mine == nil || s.Revision > mine.Revision {
					mine = s
				}
				if cur := st.Load(); mine.Revision > cur.Revision {
					t.Errorf("Load() = %q, older than %q which was swapped in before", cur.Version, mine.Version)
				}
			}
			mu.Lock()
			if newest == nil || mine.Revision > newest.Revision {
				newest = mine
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if got := st.Load(); got != newest {
		t.Errorf("Load() after concurrent swaps = %q at revision %d, want the newest %q at %d",
			got.Version, got.Revision, newest.Version, newest.Revision)
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "abc", `"\`, "\x00\x1f\n\r\t", "<&>", "é😀", "\u2028", "a\xffb", "\xe2\x82"} {
		b := appendString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Errorf("appendString(%q) = %s, not a JSON string: %v", s, b, err)
			continue
		}
		if want := viaMarshal(s); got != want {
			t.Errorf("appendString(%q) decodes to %q, want %q as with json.Marshal", s, got, want)
		}
	}
}

// viaMarshal is what s becomes through json.Marshal and json.Unmarshal.
func viaMarshal(s string) string {
	b, _ := json.Marshal(s)
	var got string
	json.Unmarshal(b, &got)
	return got
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a\"b\\c", "\x00\x7f\x80", "é😀\u2028", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendString(nil, s)
		if !utf8.Valid(b) {
			t.Fatalf("appendString(%q) = %q, not valid UTF-8", s, b)
		}
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("appendString(%q) = %s, not a JSON string: %v", s, b, err)
		}
		if want := viaMarshal(s); got != want {
			t.Fatalf("appendString(%q) decodes to %q, want %q as with json.Marshal", s, got, want)
		}
	})
}

// FuzzNewSnapshot fuzzes the decoder of a source's body: it must never panic,
// and what it accepts must agree with encoding/json and survive the wire.
func FuzzNewSnapshot(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":1}`, ` { "a" : [ 1, {"b": null} ] , "c": "\u00e9\n" } `, `{"a":1,"a":2}`,
		`[]`, `null`, `"x"`, `{"a":}`, `{"a":1`, "{\"\xff\":1}", `{"":{"":{"":[]}}}`, `{"a":1e999}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := NewSnapshot("1", t0, body)
		if err != nil {
			if s != nil {
				t.Fatalf("NewSnapshot(%q) returned a snapshot with error %v", body, err)
			}
			return
		}
		want, err := decodeObject(body)
		if err != nil {
			t.Fatalf("NewSnapshot(%q) accepted what encoding/json rejects: %v", body, err)
		}
		if len(s.Items) != len(want) {
			t.Fatalf("NewSnapshot(%q) has %d items, want %d", body, len(s.Items), len(want))
		}
		for k, v := range s.Items {
			var compact bytes.Buffer
			if err := json.Compact(&compact, v); err != nil || !bytes.Equal(compact.Bytes(), v) {
				t.Fatalf("Items[%q] = %s: not compact valid JSON (%v)", k, v, err)
			}
			got, err := decodeAny(v)
			if err != nil || !reflect.DeepEqual(got, want[k]) {
				t.Fatalf("Items[%q] = %s, want %v (%v)", k, v, want[k], err)
			}
		}
		prefix, items, _ := s.data()
		if body := append(append(prefix, items...), dataSuffix...); !json.Valid(body) {
			t.Fatalf("GET /data body = %s, not valid JSON", body)
		}
		d, err := DecodeSnapshot(s.Encode())
		if err != nil {
			t.Fatalf("DecodeSnapshot(Encode()) of %q: %v", body, err)
		}
		if !reflect.DeepEqual(d.Items, s.Items) || !bytes.Equal(d.Encode(), s.Encode()) {
			t.Fatalf("DecodeSnapshot(Encode()) of %q = %s, want %s", body, d.Encode(), s.Encode())
		}
	})
}

// FuzzDecodeSnapshot fuzzes the decoder of the wire form (from the bus).
func FuzzDecodeSnapshot(f *testing.F) {
	f.Add(mustSnapshot(f, "1", t0, `{"a":[1,2],"b":{"c":"d"}}`).Encode())
	f.Add([]byte(`{"version":"v","fetchedAt":"2025-11-26T07:00:00+05:30","items":{"x":null},"extra":1}`))
	f.Add([]byte(`{"version":"v","fetchedAt":"0001-01-01T00:00:00Z","items":{}}`))
	f.Add([]byte(`{"version":"v","items":{}}`))
	f.Add([]byte(`{"version":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSnapshot(b)
		if err != nil {
			if s != nil {
				t.Fatalf("DecodeSnapshot(%q) returned a snapshot with error %v", b, err)
			}
			return
		}
		enc := s.Encode()
		d, err := DecodeSnapshot(enc)
		if err != nil {
			t.Fatalf("DecodeSnapshot(Encode()) of %q: %v", b, err)
		}
		if d.Version != s.Version || !d.FetchedAt.Equal(s.FetchedAt) || !bytes.Equal(d.Encode(), enc) {
			t.Fatalf("DecodeSnapshot(Encode()) of %q = %s, want %s", b, d.Encode(), enc)
		}
	})
}

// decodeAny decodes one JSON value as encoding/json does, with numbers kept
// as written (1e999 is valid JSON but no float64).
func decodeAny(b []byte) (any, error) {
	if !json.Valid(b) {
		return nil, errors.New("invalid JSON")
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

// decodeObject decodes a JSON object with decodeAny.
func decodeObject(b []byte) (map[string]any, error) {
	v, err := decodeAny(b)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%T, not an object", v)
	}
	return m, nil
}

// benchSnapshot is a snapshot of n keys k0..k(n-1) with small object values.
func benchSnapshot(b testing.TB, n int) *Snapshot {
	var body bytes.Buffer
	body.WriteByte('{')
	for i := range n {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `"k%d":{"id":%d,"name":"item %d","tags":["a","b"]}`, i, i, i)
	}
	body.WriteByte('}')
	return mustSnapshot(b, "1", t0, body.String()).WithBy("start", t0)
}

func BenchmarkStoreLoad(b *testing.B) {
	var st Store
	st.Swap(benchSnapshot(b, 10))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if st.Load() == nil {
				b.Fatal("Load() = nil")
			}
		}
	})
}

func BenchmarkSwap(b *testing.B) {
	s := benchSnapshot(b, 10)
	snaps := make([]*Snapshot, 4096)
	for i := range snaps {
		c := *s
		c.FetchedAt = t0.Add(time.Duration(i))
		snaps[i] = &c
	}
	b.Run("newer", func(b *testing.B) {
		var st Store
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if i%len(snaps) == 0 {
				st.p.Store(nil) // start over, so that every Swap installs
			}
			if !st.Swap(snaps[i%len(snaps)]) {
				b.Fatal("Swap(newer) = false")
			}
			i++
		}
	})
	b.Run("older", func(b *testing.B) {
		var st Store
		st.Swap(snaps[len(snaps)-1])
		b.ReportAllocs()
		for b.Loop() {
			if st.Swap(snaps[0]) {
				b.Fatal("Swap(older) = true")
			}
		}
	})
}

func BenchmarkNewSnapshot(b *testing.B) {
	body := benchSnapshot(b, 1000).items
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := NewSnapshot("1", t0, body); err != nil {
			b.Fatal(err)
		}
	}
}
