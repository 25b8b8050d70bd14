package bus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"unicode/utf8"
)

// The envelope is one JSON object per message:
//
//	{"v":1,"kind":"event","event":"refresh","from":"1234","role":"agent","data":...,"error":"..."}
//
// The encoder below writes exactly that layout with appends (no reflection
// for the envelope itself); the decoder accepts any valid JSON object with
// these keys, in any order, ignores unknown keys, and rejects duplicate keys,
// a missing field, an unknown version, kind or role, and invalid JSON.

// envelopeVersion is the version this package writes and reads.
const envelopeVersion = 1

// kind says what a message is for.
type kind uint8

const (
	kindEvent kind = iota + 1 // fire-and-forget fan-out (Broadcast, SendToApp)
	kindSend                  // point-to-point send that the receiver acks
	kindReq                   // request whose handler's result is the reply
	kindReply                 // ack of a send, or a request's reply
	kindNack                  // the receiver is there but has no handler for the event
)

var kindNames = [...]string{
	kindEvent: "event",
	kindSend:  "send",
	kindReq:   "req",
	kindReply: "reply",
	kindNack:  "nack",
}

func (k kind) String() string {
	if k == kindBatch { // a compact body's only: not in kindNames, which a JSON envelope may name
		return "batch"
	}
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// errBadEnvelope is wrapped by every decoding error.
var errBadEnvelope = errors.New("bus: bad envelope")

// envelope is a decoded message, of either wire version. The byte slices
// alias the decoded input.
type envelope struct {
	wire  uint8 // wireJSON or wireCompact: a reply is sent in the same
	kind  kind
	event []byte // wire 1 only: in wire 2 the subject says it
	from  []byte // wire 1, and a reply of wire 2
	role  Role
	data  []byte // one raw JSON value, nil when absent
	err   string // a reply's error, "" when none
}

// appendHead appends the envelope up to and including `"data":`. event, from
// and role must be valid tokens (they need no escaping).
func appendHead(dst []byte, k kind, event, from string, role Role) []byte {
	dst = append(dst, `{"v":1,"kind":"`...)
	dst = append(dst, kindNames[k]...)
	dst = append(dst, `","event":"`...)
	dst = append(dst, event...)
	dst = append(dst, `","from":"`...)
	dst = append(dst, from...)
	dst = append(dst, `","role":"`...)
	dst = append(dst, role...)
	return append(dst, `","data":`...)
}

// appendTail closes an envelope begun by appendHead, with an optional error.
func appendTail(dst []byte, errMsg string) []byte {
	if errMsg != "" {
		dst = append(dst, `,"error":`...)
		dst = appendString(dst, errMsg)
	}
	return append(dst, '}')
}

// Errors of data that no receiver would accept.
var (
	errNotJSON    = fmt.Errorf("%w: not one valid JSON value", ErrBadData)
	errNestedData = fmt.Errorf("%w: arrays and objects nested deeper than %d levels", ErrBadData, maxDepth)
)

// appendData appends v as one JSON value: nil as null, []byte and
// json.RawMessage as they are (they must hold one valid JSON value), anything
// else through encoding/json. Data the decoder would refuse is an error
// wrapping ErrBadData, so that the sender hears of it, not the receivers.
func appendData(dst []byte, v any) ([]byte, error) {
	switch d := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case json.RawMessage:
		return appendRaw(dst, d)
	case []byte:
		return appendRaw(dst, d)
	case string:
		return appendString(dst, d), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return dst, fmt.Errorf("bus: encode data: %w", err)
	}
	if err := checkDepth(b); err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}

func appendRaw(dst, raw []byte) ([]byte, error) {
	start := skipSpace(raw, 0)
	end, err := skipValue(raw, start, 0)
	if err != nil {
		return dst, dataError(err)
	}
	if skipSpace(raw, end) != len(raw) {
		return dst, errNotJSON
	}
	return append(dst, raw[start:end]...), nil
}

// checkDepth checks that the valid JSON b (encoding/json's output) nests no
// deeper than the decoder accepts, which encoding/json does not bound. It
// scans only what has more opening brackets than the limit (never a small
// payload), and only until the brackets left cannot reach it.
func checkDepth(b []byte) error {
	if len(b) < 2*(maxDepth+1) {
		return nil
	}
	opens := bytes.Count(b, []byte{'['}) + bytes.Count(b, []byte{'{'})
	if opens > maxDepth && nestsDeeper(b, maxDepth, opens) {
		return errNestedData
	}
	return nil
}

// dataError is the sender's error for data the scanner refused with err.
func dataError(err error) error {
	if errors.Is(err, errTooDeep) {
		return errNestedData
	}
	return errNotJSON
}

// appendString appends s as a JSON string: as it is when it needs no
// escaping (the common case), else through encoding/json.
func appendString(dst []byte, s string) []byte {
	i := 0
	for i+8 <= len(s) && !hasStringStop(load64(s, i)) {
		i += 8
	}
	for ; i < len(s); i++ {
		if stringStop[s[i]] {
			b, _ := json.Marshal(s) // a string always encodes
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// appendBody appends a whole message body of wire version w. event is
// written in wire 1 only, from in wire 1 and in a reply or a nack.
func appendBody(dst []byte, w uint8, k kind, event, from string, role Role, data any, errMsg string) ([]byte, error) {
	if w >= wireCompact {
		return appendData(appendCompactHead(dst, k, from, role, errMsg), data)
	}
	dst, err := appendData(appendHead(dst, k, event, from, role), data)
	if err != nil {
		return dst, err
	}
	return appendTail(dst, errMsg), nil
}

// encodeEnvelope returns a whole JSON envelope (wire 1).
func encodeEnvelope(dst []byte, k kind, event, from string, role Role, data any, errMsg string) ([]byte, error) {
	b, err := appendBody(dst, wireJSON, k, event, from, role, data, errMsg)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// bufPool holds encoding buffers. nats.go copies a payload before Publish
// returns, so a buffer goes back to the pool right after.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

const maxPooledBuf = 64 << 10

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) <= maxPooledBuf {
		*b = (*b)[:0]
		bufPool.Put(b)
	}
}

// Fields seen by the decoder, to find missing and duplicate keys.
const (
	seenV = 1 << iota
	seenKind
	seenEvent
	seenFrom
	seenRole
	seenData
	seenError
	seenRequired = seenV | seenKind | seenEvent | seenFrom | seenRole
)

// decodeEnvelope decodes b, a body of either wire version. It does not
// allocate in the common case: the returned byte slices alias b.
func decodeEnvelope(b []byte) (envelope, error) {
	if len(b) > 0 && b[0] == wireCompact {
		return decodeCompact(b)
	}
	if e, ok := decodeFast(b); ok {
		return e, nil
	}
	return decodeAny(b)
}

// The layout appendHead writes, piece by piece.
const (
	layoutKind  = `{"v":1,"kind":"`
	layoutEvent = `","event":"`
	layoutFrom  = `","from":"`
	layoutRole  = `","role":"`
	layoutData  = `","data":`
)

// decodeFast decodes an envelope in exactly the layout this package writes,
// without an error field and with plain tokens (ASCII without escapes),
// by matching the fixed pieces instead of reading keys: every message but a
// failed reply. It reports false for anything else, and decodeAny decides; for
// an input both accept, both return the same envelope (FuzzDecodeFast).
func decodeFast(b []byte) (e envelope, ok bool) {
	e.wire = wireJSON
	var tok []byte
	i, ok := literal(b, 0, layoutKind)
	if !ok {
		return e, false
	}
	if tok, i, ok = plainToken(b, i); !ok {
		return e, false
	}
	for k := kindEvent; k <= kindNack; k++ {
		if string(tok) == kindNames[k] {
			e.kind = k
		}
	}
	if e.kind == 0 {
		return e, false
	}
	if i, ok = literal(b, i, layoutEvent); !ok {
		return e, false
	}
	if e.event, i, ok = plainToken(b, i); !ok {
		return e, false
	}
	if i, ok = literal(b, i, layoutFrom); !ok {
		return e, false
	}
	if e.from, i, ok = plainToken(b, i); !ok {
		return e, false
	}
	if i, ok = literal(b, i, layoutRole); !ok {
		return e, false
	}
	if tok, i, ok = plainToken(b, i); !ok {
		return e, false
	}
	for _, r := range [...]Role{RoleMaster, RoleAgent, RoleWorker, RoleControl} {
		if string(tok) == string(r) {
			e.role = r
		}
	}
	if e.role == "" {
		return e, false
	}
	if i, ok = literal(b, i, layoutData); !ok {
		return e, false
	}
	var end int
	var err error
	if i < len(b) && b[i] == '"' {
		end, _, err = scanString(b, i)
	} else {
		end, err = skipValue(b, i, 0)
	}
	if err != nil || end != len(b)-1 || b[end] != '}' {
		return e, false
	}
	e.data = b[i:end]
	return e, true
}

// literal reports whether lit is at b[i:], and the offset after it.
func literal(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, false
	}
	return i + len(lit), true
}

// plainToken returns the contents of the string whose opening quote is b[i-1]
// and the offset of its closing quote, if they are ASCII without escapes.
func plainToken(b []byte, i int) ([]byte, int, bool) {
	end, plain, err := scanString(b, i-1)
	if err != nil || !plain {
		return nil, i, false
	}
	return b[i : end-1], end - 1, true
}

// decodeAny decodes any JSON object with the envelope's fields, in any order.
func decodeAny(b []byte) (envelope, error) {
	e := envelope{wire: wireJSON}
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return e, fmt.Errorf("%w: not a JSON object", errBadEnvelope)
	}
	i = skipSpace(b, i+1)
	seen := 0
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		for {
			var key []byte
			var err error
			key, i, err = decodeKey(b, i)
			if err != nil {
				return e, err
			}
			start, plain := i, false
			if i < len(b) && b[i] == '"' {
				i, plain, err = scanString(b, i)
			} else {
				i, err = skipValue(b, i, 0)
			}
			if err != nil {
				return e, err
			}
			bit, err := e.set(key, b[start:i], plain)
			if err != nil {
				return e, err
			}
			if seen&bit != 0 {
				return e, fmt.Errorf("%w: duplicate key %q", errBadEnvelope, key)
			}
			seen |= bit
			i = skipSpace(b, i)
			if i < len(b) && b[i] == ',' {
				i = skipSpace(b, i+1)
				continue
			}
			if i < len(b) && b[i] == '}' {
				i++
				break
			}
			return e, syntaxError(b, i)
		}
	}
	if skipSpace(b, i) != len(b) {
		return e, fmt.Errorf("%w: data after the object", errBadEnvelope)
	}
	if seen&seenRequired != seenRequired {
		return e, fmt.Errorf("%w: missing %s", errBadEnvelope, missing(seen))
	}
	return e, nil
}

// decodeKey reads `"key" :` at b[i] and returns the key and the offset of the value.
func decodeKey(b []byte, i int) (key []byte, next int, err error) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, syntaxError(b, i)
	}
	end, plain, err := scanString(b, i)
	if err != nil {
		return nil, i, err
	}
	if key, err = stringValue(b[i:end], plain); err != nil {
		return nil, i, err
	}
	i = skipSpace(b, end)
	if i >= len(b) || b[i] != ':' {
		return nil, i, syntaxError(b, i)
	}
	return key, skipSpace(b, i+1), nil
}

// set stores one field's raw value (already checked to be valid JSON) and
// returns its seen bit; unknown keys return 0.
func (e *envelope) set(key, val []byte, plain bool) (int, error) {
	switch string(key) {
	case "v":
		if string(val) != "1" {
			return 0, fmt.Errorf("%w: unsupported version %.20s", errBadEnvelope, val)
		}
		return seenV, nil
	case "kind":
		s, err := stringField("kind", val, plain)
		if err != nil {
			return 0, err
		}
		for k := kindEvent; k <= kindNack; k++ {
			if string(s) == kindNames[k] {
				e.kind = k
				return seenKind, nil
			}
		}
		return 0, fmt.Errorf("%w: unknown kind %.20q", errBadEnvelope, s)
	case "event":
		s, err := stringField("event", val, plain)
		e.event = s
		return seenEvent, err
	case "from":
		s, err := stringField("from", val, plain)
		e.from = s
		return seenFrom, err
	case "role":
		s, err := stringField("role", val, plain)
		if err != nil {
			return 0, err
		}
		switch string(s) {
		case string(RoleMaster):
			e.role = RoleMaster
		case string(RoleAgent):
			e.role = RoleAgent
		case string(RoleWorker):
			e.role = RoleWorker
		case string(RoleControl):
			e.role = RoleControl
		default:
			return 0, fmt.Errorf("%w: unknown role %.20q", errBadEnvelope, s)
		}
		return seenRole, nil
	case "data":
		e.data = val
		return seenData, nil
	case "error":
		s, err := stringField("error", val, plain)
		e.err = string(s)
		return seenError, err
	}
	return 0, nil
}

func stringField(name string, val []byte, plain bool) ([]byte, error) {
	if len(val) == 0 || val[0] != '"' {
		return nil, fmt.Errorf("%w: %s is not a string", errBadEnvelope, name)
	}
	return stringValue(val, plain)
}

// stringValue returns the contents of the valid JSON string token tok
// (plain, as scanString says, when it is ASCII without escapes), unescaping
// through encoding/json only when it has escapes. Invalid UTF-8 is an error
// (encoding/json would silently replace it).
func stringValue(tok []byte, plain bool) ([]byte, error) {
	inner := tok[1 : len(tok)-1]
	if plain {
		return inner, nil
	}
	if !utf8.Valid(inner) {
		return nil, fmt.Errorf("%w: string is not valid UTF-8", errBadEnvelope)
	}
	if bytes.IndexByte(inner, '\\') < 0 {
		return inner, nil
	}
	var s string
	if err := json.Unmarshal(tok, &s); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadEnvelope, err)
	}
	return []byte(s), nil
}

func missing(seen int) string {
	for _, f := range []struct {
		bit  int
		name string
	}{{seenV, "v"}, {seenKind, "kind"}, {seenEvent, "event"}, {seenFrom, "from"}, {seenRole, "role"}} {
		if seen&f.bit == 0 {
			return f.name
		}
	}
	return "nothing"
}
