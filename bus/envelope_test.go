package bus

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	type point struct {
		X, Y int
	}
	tests := []struct {
		name     string
		data     any
		wantData string
		errMsg   string
	}{
		{"nil", nil, "null", ""},
		{"string", "push", `"push"`, ""},
		{"string to escape", "a \"q\"\n\u00e9", `"a \"q\"\n\u00e9"`, ""},
		{"struct", point{1, 2}, `{"X":1,"Y":2}`, ""},
		{"raw", json.RawMessage(` {"a": [1, 2.5e3, null]} `), `{"a": [1, 2.5e3, null]}`, ""},
		{"bytes", []byte(`"v7"`), `"v7"`, ""},
		{"number", 42, `42`, ""},
		{"with error", nil, "null", "it broke: \"badly\"\n"},
	}
	for _, k := range []kind{kindEvent, kindSend, kindReq, kindReply, kindNack} {
		for _, tt := range tests {
			t.Run(k.String()+"/"+tt.name, func(t *testing.T) {
				b, err := encodeEnvelope(nil, k, "refresh", "w1", RoleWorker, tt.data, tt.errMsg)
				if err != nil {
					t.Fatalf("encodeEnvelope(%v) error: %v", tt.data, err)
				}
				if !json.Valid(b) {
					t.Fatalf("encodeEnvelope(%v) = %s, not valid JSON", tt.data, b)
				}
				e, err := decodeEnvelope(b)
				if err != nil {
					t.Fatalf("decodeEnvelope(%s) error: %v", b, err)
				}
				var gotData, wantData any
				if err := json.Unmarshal(e.data, &gotData); err != nil {
					t.Fatalf("decodeEnvelope(%s).data = %s: %v", b, e.data, err)
				}
				_ = json.Unmarshal([]byte(tt.wantData), &wantData)
				if e.kind != k || string(e.event) != "refresh" || string(e.from) != "w1" ||
					e.role != RoleWorker || e.err != tt.errMsg || !reflect.DeepEqual(gotData, wantData) {
					t.Errorf("decodeEnvelope(%s) = {kind %s event %q from %q role %q data %s err %q}, want {%s refresh w1 worker %s %q}",
						b, e.kind, e.event, e.from, e.role, e.data, e.err, k, tt.wantData, tt.errMsg)
				}
			})
		}
	}
}

func TestDecodeEnvelopeAccepts(t *testing.T) {
	tests := []struct {
		name, in   string
		event      string
		role       Role
		data, errs string
	}{
		{"ours", `{"v":1,"kind":"event","event":"e","from":"f","role":"agent","data":{"a":1}}`, "e", RoleAgent, `{"a":1}`, ""},
		{"any order and space", " {\n\"data\" : [ ] , \"role\":\"master\",\"from\":\"f\",\"event\":\"e\",\"kind\":\"send\",\"v\":1 } \t", "e", RoleMaster, `[ ]`, ""},
		{"no data", `{"v":1,"kind":"reply","event":"e","from":"f","role":"worker"}`, "e", RoleWorker, ``, ""},
		{"unknown key", `{"v":1,"kind":"req","event":"e","from":"f","role":"worker","trace":{"x":[1,{"y":"z"}]}}`, "e", RoleWorker, ``, ""},
		{"escapes", `{"v":1,"kind":"reply","event":"\u0065","from":"f","role":"\u0063ontrol","error":"a\tb\u00e9"}`, "e", RoleControl, ``, "a\tb\u00e9"},
		{"escaped key", `{"\u0076":1,"kind":"event","event":"e","from":"f","role":"worker"}`, "e", RoleWorker, ``, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := decodeEnvelope([]byte(tt.in))
			if err != nil {
				t.Fatalf("decodeEnvelope(%s) error: %v", tt.in, err)
			}
			if string(e.event) != tt.event || string(e.from) != "f" || e.role != tt.role ||
				string(e.data) != tt.data || e.err != tt.errs {
				t.Errorf("decodeEnvelope(%s) = {event %q from %q role %q data %q err %q}, want {%q f %q %q %q}",
					tt.in, e.event, e.from, e.role, e.data, e.err, tt.event, tt.role, tt.data, tt.errs)
			}
		})
	}
}

func TestDecodeEnvelopeRejects(t *testing.T) {
	const ok = `"kind":"event","event":"e","from":"f","role":"worker"`
	tests := []struct{ name, in, why string }{
		{"empty", ``, "not a JSON object"},
		{"array", `[1]`, "not a JSON object"},
		{"not json", `{v:1}`, "invalid character"},
		{"empty object", `{}`, "missing v"},
		{"no version", `{` + ok + `}`, "missing v"},
		{"version 2", `{"v":2,` + ok + `}`, "unsupported version"},
		{"version string", `{"v":"1",` + ok + `}`, "unsupported version"},
		{"version float", `{"v":1.0,` + ok + `}`, "unsupported version"},
		{"no kind", `{"v":1,"event":"e","from":"f","role":"worker"}`, "missing kind"},
		{"unknown kind", `{"v":1,"kind":"shout","event":"e","from":"f","role":"worker"}`, "unknown kind"},
		{"unknown role", `{"v":1,"kind":"event","event":"e","from":"f","role":"root"}`, "unknown role"},
		{"event number", `{"v":1,"kind":"event","event":1,"from":"f","role":"worker"}`, "event is not a string"},
		{"duplicate", `{"v":1,` + ok + `,"from":"g"}`, "duplicate key"},
		{"trailing", `{"v":1,` + ok + `}x`, "data after the object"},
		{"two objects", `{"v":1,` + ok + `}{}`, "data after the object"},
		{"bad data", `{"v":1,` + ok + `,"data":tru}`, "invalid character"},
		{"bad number", `{"v":1,` + ok + `,"data":01}`, "invalid character"},
		{"bad escape", `{"v":1,` + ok + `,"data":"\x"}`, "invalid character"},
		{"bad unicode escape", `{"v":1,` + ok + `,"data":"\u12g4"}`, `bad \u escape`},
		{"control in string", "{\"v\":1," + ok + ",\"data\":\"a\nb\"}", "invalid character"},
		{"unterminated", `{"v":1,` + ok + `,"data":"abc`, "unexpected end"},
		{"missing brace", `{"v":1,` + ok, "unexpected end"},
		{"trailing comma", `{"v":1,` + ok + `,}`, "invalid character"},
		{"too deep", `{"v":1,` + ok + `,"data":` + strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1) + `}`, "nested deeper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeEnvelope([]byte(tt.in))
			if err == nil {
				t.Fatalf("decodeEnvelope(%q) = nil error, want %q", tt.in, tt.why)
			}
			if !errors.Is(err, errBadEnvelope) || !strings.Contains(err.Error(), tt.why) {
				t.Errorf("decodeEnvelope(%q) = %v, want a bad envelope error with %q", tt.in, err, tt.why)
			}
		})
	}
}

func TestAppendData(t *testing.T) {
	for _, bad := range []any{[]byte(`{`), json.RawMessage(``), json.RawMessage(`1 2`), []byte(`nul`)} {
		if _, err := appendData(nil, bad); !errors.Is(err, ErrBadData) {
			t.Errorf("appendData(%q) = %v, want ErrBadData", bad, err)
		}
	}
	if _, err := appendData(nil, make(chan int)); err == nil {
		t.Errorf("appendData(chan) = nil error, want an encoding error")
	}
}

// FuzzDecode checks the envelope decoder against encoding/json: it never
// panics, it accepts only valid JSON, the fields it returns are those
// encoding/json sees, and what it decodes encodes back to the same envelope.
func FuzzDecode(f *testing.F) {
	seeds := []string{
		`{"v":1,"kind":"event","event":"refresh","from":"123","role":"agent","data":"push"}`,
		`{"v":1,"kind":"reply","event":"status","from":"w1","role":"worker","data":{"version":"v7","items":[1,2,3]},"error":"oops"}`,
		`{"v":1,"kind":"send","event":"e","from":"f","role":"master","data":null}`,
		`{"v":1,"kind":"nack","event":"e","from":"f","role":"control"}`,
		`{"v":1,"kind":"req","event":"\u00e9","from":"f","role":"worker","data":[true,false,-0.5e-3,"\ud83d\ude00"]}`,
		` { "v" : 1 , "kind":"event","event":"e","from":"f","role":"worker","x":{} } `,
		`{"v":2}`,
		`{"v":1,"v":1}`,
		`[`,
		`{"data":"\`,
		``,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEnvelope(b)
		if err != nil {
			if !errors.Is(err, errBadEnvelope) {
				t.Fatalf("decodeEnvelope(%q) error %v does not wrap errBadEnvelope", b, err)
			}
			return
		}
		if e.wire == wireCompact {
			return // FuzzDecodeCompact
		}
		if !json.Valid(b) {
			t.Fatalf("decodeEnvelope(%q) accepted invalid JSON", b)
		}
		var ref map[string]json.RawMessage
		if err := json.Unmarshal(b, &ref); err != nil {
			t.Fatalf("decodeEnvelope(%q) accepted what encoding/json rejects: %v", b, err)
		}
		str := func(key string) string {
			var s string
			if err := json.Unmarshal(ref[key], &s); err != nil {
				t.Fatalf("decodeEnvelope(%q): encoding/json reads %q as %s: %v", b, key, ref[key], err)
			}
			return s
		}
		if string(ref["v"]) != "1" || str("kind") != e.kind.String() || str("event") != string(e.event) ||
			str("from") != string(e.from) || str("role") != string(e.role) || !bytes.Equal(ref["data"], e.data) {
			t.Fatalf("decodeEnvelope(%q) = %+v, encoding/json sees %q", b, e, ref)
		}
		if _, has := ref["error"]; has && str("error") != e.err {
			t.Fatalf("decodeEnvelope(%q).err = %q, encoding/json sees %q", b, e.err, ref["error"])
		}

		if ValidEvent(string(e.event)) != nil || ValidID(string(e.from)) != nil {
			return // the encoder is only given valid tokens (a receiver drops these anyway)
		}
		var data any = json.RawMessage(e.data)
		if e.data == nil {
			data = nil
		}
		again, err := encodeEnvelope(nil, e.kind, string(e.event), string(e.from), e.role, data, e.err)
		if err != nil {
			t.Fatalf("encodeEnvelope of decoded %q: %v", b, err)
		}
		e2, err := decodeEnvelope(again)
		if err != nil {
			t.Fatalf("decodeEnvelope(encodeEnvelope(decoded %q)) = %v", b, err)
		}
		if e2.kind != e.kind || !bytes.Equal(e2.event, e.event) || !bytes.Equal(e2.from, e.from) ||
			e2.role != e.role || e2.err != e.err || (e.data != nil && !bytes.Equal(e2.data, e.data)) {
			t.Fatalf("round trip of %q: %+v, then %+v", b, e, e2)
		}
	})
}

// FuzzAppendRaw checks the data validator against json.Valid.
func FuzzAppendRaw(f *testing.F) {
	for _, s := range []string{`1`, ` {"a":[1,"b",null,true,false,-1.5E+3]} `, `"\u00e9\n"`, `{`, `01`, `[1,]`, `"\x"`, `1e`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := appendRaw(nil, b)
		valid := json.Valid(b)
		shallow := bytes.Count(b, []byte("["))+bytes.Count(b, []byte("{")) <= maxDepth
		if err == nil && !valid {
			t.Fatalf("appendRaw(%q) accepted invalid JSON", b)
		}
		if err != nil && valid && shallow {
			t.Fatalf("appendRaw(%q) = %v, but it is valid JSON", b, err)
		}
	})
}

var sink envelope

func BenchmarkEnvelopeEncode(b *testing.B) {
	// An any, so that the benchmark measures the encoder, not the caller's conversion.
	var data any = json.RawMessage(`{"version":"2024-06-01T10:00:00Z#42","by":"push","keys":["a","b","c"]}`)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendHead(buf[:0], kindEvent, "refresh", "worker-12345", RoleAgent)
		buf, _ = appendData(buf, data)
		buf = appendTail(buf, "")
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkEnvelopeEncodeString(b *testing.B) {
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendHead(buf[:0], kindEvent, "refresh", "worker-12345", RoleAgent)
		buf, _ = appendData(buf, "push")
		buf = appendTail(buf, "")
	}
}

func BenchmarkEnvelopeDecode(b *testing.B) {
	msg, err := encodeEnvelope(nil, kindEvent, "refresh", "worker-12345", RoleAgent,
		json.RawMessage(`{"version":"2024-06-01T10:00:00Z#42","by":"push","keys":["a","b","c"]}`), "")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		sink, err = decodeEnvelope(msg)
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEnvelopeDecodeStdlib is the reference: encoding/json into a small struct.
func BenchmarkEnvelopeDecodeStdlib(b *testing.B) {
	msg, _ := encodeEnvelope(nil, kindEvent, "refresh", "worker-12345", RoleAgent,
		json.RawMessage(`{"version":"2024-06-01T10:00:00Z#42","by":"push","keys":["a","b","c"]}`), "")
	var e struct {
		V                       int
		Kind, Event, From, Role string
		Data                    json.RawMessage
		Error                   string
	}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if err := json.Unmarshal(msg, &e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEnvelopeDecodeSize decodes the envelopes of the fan-out benchmark's
// payloads: a JSON string of 128 B and of 4 KiB.
func BenchmarkEnvelopeDecodeSize(b *testing.B) {
	for _, size := range []int{128, 4096} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			data := json.RawMessage(`"` + strings.Repeat("x", size-2) + `"`)
			msg, err := encodeEnvelope(nil, kindEvent, "fanout", "agent-1", RoleAgent, data, "")
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				sink, err = decodeEnvelope(msg)
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzDecodeFast checks the fixed-layout decoder against the general one: what
// decodeFast accepts, decodeAny accepts too, with the same fields.
func FuzzDecodeFast(f *testing.F) {
	for _, s := range []string{
		`{"v":1,"kind":"event","event":"refresh","from":"123","role":"agent","data":"push"}`,
		`{"v":1,"kind":"req","event":"e","from":"worker-1","role":"worker","data":{"a":[1,2,{"b":"\u00e9"}]}}`,
		`{"v":1,"kind":"send","event":"e","from":"f","role":"control","data":null}`,
		`{"v":1,"kind":"reply","event":"e","from":"f","role":"master","data":1,"error":"x"}`,
		`{"v":1,"kind":"event","event":"e","from":"f","role":"agent","data":"a\"b"}`,
		`{"v":1,"kind":"event","event":"e","from":"f","role":"agent","data":"x" }`,
		`{"v":1,"kind":"event","event":"e\u0041","from":"f","role":"agent","data":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := decodeFast(b)
		if !ok {
			return
		}
		all, err := decodeAny(b)
		if err != nil {
			t.Fatalf("decodeFast accepted %q, decodeAny: %v", b, err)
		}
		if fast.kind != all.kind || !bytes.Equal(fast.event, all.event) || !bytes.Equal(fast.from, all.from) ||
			fast.role != all.role || !bytes.Equal(fast.data, all.data) || fast.err != all.err {
			t.Fatalf("%q: decodeFast %+v, decodeAny %+v", b, fast, all)
		}
	})
}

// Every envelope this package writes without an error takes the fast path.
func TestEncodedEnvelopesDecodeFast(t *testing.T) {
	for _, data := range []any{nil, "push", json.RawMessage(`{"version":"v7"}`), []int{1, 2}, "é \" \\"} {
		for k := kindEvent; k <= kindNack; k++ {
			b, err := encodeEnvelope(nil, k, "refresh", "worker-1", RoleWorker, data, "")
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := decodeFast(b); !ok {
				t.Errorf("decodeFast(%s) did not take it", b)
			}
		}
	}
}

func TestCompactRoundTrip(t *testing.T) {
	errs := []string{"", "it broke: \"badly\"\n\u00e9", strings.Repeat("e", 300), "not UTF-8: \xff"} // 300: a uvarint of two bytes
	for _, k := range []kind{kindEvent, kindSend, kindReq, kindReply, kindNack} {
		for _, role := range []Role{RoleMaster, RoleAgent, RoleWorker, RoleControl} {
			for _, errMsg := range errs {
				if errMsg != "" && !carriesSender(k) {
					continue // only a reply has an error
				}
				from := "worker-1@host-a"
				b, err := appendBody(nil, wireCompact, k, "refresh", from, role, json.RawMessage(`{"a":[1,2]}`), errMsg)
				if err != nil {
					t.Fatal(err)
				}
				e, err := decodeEnvelope(b)
				if err != nil {
					t.Fatalf("decodeEnvelope(%q): %v", b, err)
				}
				wantFrom := ""
				if carriesSender(k) {
					wantFrom = from
				}
				if e.wire != wireCompact || e.kind != k || e.role != role || e.event != nil || string(e.from) != wantFrom ||
					e.err != strings.ToValidUTF8(errMsg, "\uFFFD") || string(e.data) != `{"a":[1,2]}` {
					t.Errorf("decodeEnvelope(%q) = %+v, want kind %s role %s from %q err %q", b, e, k, role, wantFrom, errMsg)
				}
			}
		}
	}
	// an event of 128 B of data carries 2 bytes besides it
	b, err := appendBody(nil, wireCompact, kindEvent, "refresh", "agent-1", RoleAgent, json.RawMessage(`"`+strings.Repeat("x", 126)+`"`), "")
	if err != nil || len(b) != 130 {
		t.Errorf("a compact event of 128 B is %d bytes (%v), want 130", len(b), err)
	}
}

// FuzzDecodeCompact checks that the compact decoder refuses or reads any
// input without panicking, that what it reads has a known kind and role, a
// valid sender in a reply and data, and that encoding what it read gives
// back the same.
func FuzzDecodeCompact(f *testing.F) {
	for _, s := range []string{
		"\x02\x21\"push\"",
		"\x02\x34\x02w1\x00null",
		"\x02\x35\x02w1\x0fno handler for enull",
		"\x02\x24\xffw1",
		"\x02\x24\x02w1\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
		"\x02",
		"\x02\x26\x01" + `1` + "\x03" + `"b"`,
		"\x02\x26\x01" + `1` + "\x05" + `"b"`,
		"\x02\x26\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 0 {
			b[0] = wireCompact
		}
		e, err := decodeCompact(b)
		if err != nil {
			if !errors.Is(err, errBadEnvelope) {
				t.Fatalf("decodeCompact(%q) error %v does not wrap errBadEnvelope", b, err)
			}
			return
		}
		if e.kind < kindEvent || e.kind > kindBatch || !e.role.Valid() || len(e.data) == 0 {
			t.Fatalf("decodeCompact(%q) = %+v", b, e)
		}
		if e.kind == kindBatch {
			n, err := batchItems(e.data)
			if err != nil {
				if !errors.Is(err, errBadEnvelope) {
					t.Fatalf("batchItems(%q) error %v does not wrap errBadEnvelope", e.data, err)
				}
				return
			}
			var again []byte // the events, each with its length again
			for rest := e.data; len(rest) > 0; n-- {
				var item []byte
				item, rest = nextItem(rest)
				if len(item) == 0 {
					t.Fatalf("batch %q: an empty event", e.data)
				}
				again = append(binary.AppendUvarint(again, uint64(len(item))), item...)
			}
			if n != 0 || !bytes.Equal(again, e.data) {
				t.Fatalf("batch %q: %d events left over, read back as %q", e.data, n, again)
			}
		}
		if carriesSender(e.kind) && ValidID(string(e.from)) != nil {
			t.Fatalf("decodeCompact(%q) took a reply from %q", b, e.from)
		}
		again := append(appendCompactHead(nil, e.kind, string(e.from), e.role, e.err), e.data...)
		e2, err := decodeCompact(again)
		if err != nil || e2.kind != e.kind || e2.role != e.role || !bytes.Equal(e2.from, e.from) ||
			e2.err != e.err || !bytes.Equal(e2.data, e.data) {
			t.Fatalf("round trip of %q: %+v, then %q: %+v, %v", b, e, again, e2, err)
		}
	})
}
