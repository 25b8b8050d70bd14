package bus

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkEnvelopeEncodeValue encodes data that goes through encoding/json
// (a value, not bytes): a small struct, a 4 KiB one with few brackets,
// 1200 and 12000 small objects (more brackets than the nesting limit), and a
// struct with a snapshot of 12000 objects inline as json.RawMessage, as the
// cache's refresh event carries it.
func BenchmarkEnvelopeEncodeValue(b *testing.B) {
	type refresh struct {
		Version string   `json:"version"`
		By      string   `json:"by"`
		Keys    []string `json:"keys"`
	}
	type item struct {
		K string `json:"k"`
		V int    `json:"v"`
	}
	keys := make([]string, 400)
	for i := range keys {
		keys[i] = "key-" + strconv.Itoa(i)
	}
	items := make([]item, 12000)
	for i := range items {
		items[i] = item{K: "k" + strconv.Itoa(i), V: i}
	}
	snapshot, err := json.Marshal(items)
	if err != nil {
		b.Fatal(err)
	}
	type refreshInline struct {
		Version  string          `json:"version"`
		Snapshot json.RawMessage `json:"snapshot"`
	}
	for _, bc := range []struct {
		name string
		data any
	}{
		{"small", refresh{Version: "2024-06-01T10:00:00Z#42", By: "push", Keys: []string{"a", "b", "c"}}},
		{"4KiB", refresh{Version: "2024-06-01T10:00:00Z#42", By: "push", Keys: keys}},
		{"1200objects", items[:1200]},
		{"12000objects", items},
		{"inlineSnapshot", refreshInline{Version: "v42", Snapshot: snapshot}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 0, 64<<10)
			b.ReportAllocs()
			for b.Loop() {
				var err error
				buf = appendHead(buf[:0], kindEvent, "refresh", "worker-12345", RoleAgent)
				if buf, err = appendData(buf, bc.data); err != nil {
					b.Fatal(err)
				}
				buf = appendTail(buf, "")
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

// nested returns a value of depth arrays, one in another, around 1.
func nested(depth int) any {
	var v any = 1
	for range depth {
		v = []any{v}
	}
	return v
}

// deepRaw is JSON of depth arrays, one in another, around 1.
func deepRaw(depth int) json.RawMessage {
	return json.RawMessage(strings.Repeat("[", depth) + "1" + strings.Repeat("]", depth))
}

// deepJSON marshals itself as depth arrays, one in another.
type deepJSON int

func (d deepJSON) MarshalJSON() ([]byte, error) { return deepRaw(int(d)), nil }

// TestAppendDataDepth: the encoder refuses, with ErrBadData, exactly the data
// the decoder refuses as nested too deep, whatever form it is given in; what
// it accepts, the decoder takes.
func TestAppendDataDepth(t *testing.T) {
	wide := make([]any, 3*maxDepth) // many brackets, none nested
	for i := range wide {
		wide[i] = map[string]any{"a": []int{i}}
	}
	tests := []struct {
		name string
		data any
		ok   bool
	}{
		{"value at the limit", nested(maxDepth), true},
		{"value past the limit", nested(maxDepth + 1), false},
		{"raw at the limit", deepRaw(maxDepth), true},
		{"raw past the limit", deepRaw(maxDepth + 1), false},
		{"bytes past the limit", []byte(deepRaw(maxDepth + 1)), false},
		{"marshaler at the limit", deepJSON(maxDepth), true},
		{"marshaler past the limit", deepJSON(maxDepth + 1), false},
		{"in a struct past the limit", struct{ A any }{nested(maxDepth)}, false},
		{"many brackets, shallow", wide, true},
		{"brackets in strings", strings.Repeat("[{", 2*maxDepth), true},
		{"brackets in map keys", map[string]int{strings.Repeat("[", 3*maxDepth): 1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := encodeEnvelope(nil, kindEvent, "ev", "w1", RoleWorker, tt.data, "")
			if !tt.ok {
				if !errors.Is(err, ErrBadData) || !strings.Contains(err.Error(), "nested deeper than 1000") {
					t.Fatalf("encodeEnvelope(%s) = %v, want ErrBadData, nested deeper than 1000", tt.name, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("encodeEnvelope(%s) = %v, want nil", tt.name, err)
			}
			if _, err := decodeEnvelope(b); err != nil {
				t.Fatalf("decodeEnvelope(encodeEnvelope(%s)) = %v, want nil", tt.name, err)
			}
		})
	}
}

// FuzzNestsDeeper checks the encoder's depth count against encoding/json's
// tokens: for every valid JSON value, nestsDeeper(b, limit, opens) is true
// exactly when its arrays and objects nest deeper than limit.
func FuzzNestsDeeper(f *testing.F) {
	for _, s := range []string{
		`1`, `[]`, `[[1],{"a":[2]}]`, `{"a":{"b":{"c":[]}}}`, `"[{"`, `["]\"[", "\\", {"[":"]"}]`,
		`[ [ [ ] ] , { } ]`, `{"\\\"[[":[["\\"]]}`, `[1,[2,[3,[4]]],5]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
		}
		depth, deepest := 0, 0
		dec := json.NewDecoder(bytes.NewReader(b))
		for {
			tok, err := dec.Token()
			if err != nil {
				break
			}
			switch tok {
			case json.Delim('['), json.Delim('{'):
				depth++
				deepest = max(deepest, depth)
			case json.Delim(']'), json.Delim('}'):
				depth--
			}
		}
		count := bytes.Count(b, []byte("[")) + bytes.Count(b, []byte("{"))
		for _, opens := range []int{count, count + 7} { // any upper bound will do
			for _, limit := range []int{0, 1, 2, 3, max(deepest-1, 0), deepest, deepest + 1} {
				if got, want := nestsDeeper(b, limit, opens), deepest > limit; got != want {
					t.Fatalf("nestsDeeper(%q, %d, %d) = %v, want %v (depth %d)", b, limit, opens, got, want, deepest)
				}
			}
		}
	})
}
