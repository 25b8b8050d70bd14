package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// maxVersion is the longest version, in bytes.
const maxVersion = 256

// Snapshot is one immutable version of the data set. Make one with
// [NewSnapshot] or [DecodeSnapshot] and label it with [Snapshot.WithBy];
// never modify one (its fields, its map or the bytes of its values) after it
// has been handed to [Store.Swap] or anyone else. A Snapshot is safe for
// concurrent use.
type Snapshot struct {
	Version   string                     // the source's version (its ETag without quotes)
	By        string                     // what caused the update: start, force, pull, push, catchup
	UpdatedAt time.Time                  // when this process installed it
	FetchedAt time.Time                  // when it was fetched from the remote (orders snapshots across processes)
	Items     map[string]json.RawMessage // key -> value, each a compact valid JSON value

	// wire is the wire form, {"version":..,"fetchedAt":..,"items":{..}}, as
	// Encode returns it. Everything else points into it: items is its items
	// object (keys sorted, values compact) and each value in Items is a
	// sub-slice of that, so the data set is stored once, in one allocation.
	wire  []byte
	items []byte
	// versionHeader is the X-Yolk-Version header value.
	versionHeader []string
	// dataPrefix is the GET /data body up to its items object; the body is
	// dataPrefix, items, "}\n". It depends on By and UpdatedAt, so WithBy
	// builds a new one. dataLength is the body's Content-Length header value.
	dataPrefix []byte
	dataLength []string
}

// NewSnapshot decodes body, a JSON object of key to any JSON value, into a
// snapshot of the given version fetched at fetchedAt. Values are compacted
// (insignificant white space removed); for a key given twice the last value
// wins, as in [encoding/json]. The body must be valid UTF-8. A version is 1 to
// 256 printable ASCII characters other than space and '"' (what fits in a
// strong ETag). By and UpdatedAt are left empty: see [Snapshot.WithBy].
// NewSnapshot does not keep body.
func NewSnapshot(version string, fetchedAt time.Time, body []byte) (*Snapshot, error) {
	s, err := newSnapshot(version, fetchedAt, body)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	return s, nil
}

// newSnapshot is NewSnapshot with errors not yet prefixed, for callers that
// wrap them with more context first.
func newSnapshot(version string, fetchedAt time.Time, body []byte) (*Snapshot, error) {
	if err := checkVersion(version); err != nil {
		return nil, err
	}
	if err := checkObject(body); err != nil {
		return nil, err
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("decode body: %w", err)
	}
	fetchedAt = fetchedAt.Round(0) // wall clock only: it is compared across processes

	var buf bytes.Buffer
	buf.Grow(len(body) + len(version) + 64)
	buf.WriteString(`{"version":`)
	buf.Write(appendString(buf.AvailableBuffer(), version))
	buf.WriteString(`,"fetchedAt":`)
	buf.Write(appendTime(buf.AvailableBuffer(), fetchedAt))
	buf.WriteString(`,"items":`)
	itemsStart := buf.Len()
	keys, spans, err := writeItems(&buf, raw)
	if err != nil {
		return nil, err
	}
	itemsEnd := buf.Len()
	buf.WriteByte('}')

	wire := buf.Bytes()
	wire = wire[:len(wire):len(wire)]
	items := make(map[string]json.RawMessage, len(keys))
	for i, k := range keys {
		sp := spans[i]
		items[k] = wire[sp.start:sp.end:sp.end]
	}
	s := &Snapshot{
		Version:       version,
		FetchedAt:     fetchedAt,
		Items:         items,
		wire:          wire,
		items:         wire[itemsStart:itemsEnd:itemsEnd],
		versionHeader: []string{version},
	}
	s.setData()
	return s, nil
}

// checkVersion reports whether v can be a version.
func checkVersion(v string) error {
	if v == "" {
		return errors.New("empty version")
	}
	if len(v) > maxVersion {
		return fmt.Errorf("version longer than %d bytes", maxVersion)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c == '"' || c >= 0x7f {
			return fmt.Errorf("invalid version %q: byte %#x at %d", v, c, i)
		}
	}
	return nil
}

// checkObject rejects a body that is not valid UTF-8 or whose first value is
// not a JSON object (json.Unmarshal would accept null into a map).
func checkObject(body []byte) error {
	if !utf8.Valid(body) {
		return errors.New("body is not valid UTF-8")
	}
	t := bytes.TrimLeft(body, " \t\r\n")
	switch {
	case len(t) == 0:
		return errors.New("empty body")
	case t[0] == '{':
		return nil
	case t[0] == '[':
		return errors.New("body is a JSON array, want an object")
	case t[0] == 'n':
		return errors.New("body is null, want an object")
	default:
		return errors.New("body is not a JSON object")
	}
}

// span is where a value is in a buffer.
type span struct{ start, end int }

// writeItems writes raw to buf as one JSON object with sorted keys and
// compact values, and returns the keys and where each value is in buf.
func writeItems(buf *bytes.Buffer, raw map[string]json.RawMessage) ([]string, []span, error) {
	keys := slices.Sorted(maps.Keys(raw))
	spans := make([]span, len(keys))
	buf.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(appendString(buf.AvailableBuffer(), k))
		buf.WriteByte(':')
		start := buf.Len()
		if err := json.Compact(buf, raw[k]); err != nil {
			return nil, nil, fmt.Errorf("compact value of %q: %w", k, err)
		}
		spans[i] = span{start, buf.Len()}
	}
	buf.WriteByte('}')
	return keys, spans, nil
}

// setData builds the GET /data prefix and length for the current By and
// UpdatedAt.
func (s *Snapshot) setData() {
	s.dataPrefix = s.appendDataPrefix(nil)
	s.dataLength = []string{strconv.Itoa(len(s.dataPrefix) + len(s.itemsJSON()) + len(dataSuffix))}
}

// dataSuffix ends the GET /data body.
const dataSuffix = "}\n"

// appendDataPrefix appends the GET /data body up to its items:
// {"version":..,"lastUpdateBy":..,"updatedAt":..,"items":
func (s *Snapshot) appendDataPrefix(b []byte) []byte {
	b = append(b, `{"version":`...)
	b = appendString(b, s.Version)
	b = append(b, `,"lastUpdateBy":`...)
	b = appendString(b, s.By)
	b = append(b, `,"updatedAt":`...)
	b = appendTime(b, s.UpdatedAt)
	return append(b, `,"items":`...)
}

// data returns the parts of the GET /data body, prefix, items and
// dataSuffix, and its Content-Length header value.
func (s *Snapshot) data() (prefix, items []byte, length []string) {
	if s.dataPrefix != nil && s.items != nil {
		return s.dataPrefix, s.items, s.dataLength
	}
	// not made by this package (a struct literal): build them now
	prefix, items = s.appendDataPrefix(nil), s.itemsJSON()
	return prefix, items, []string{strconv.Itoa(len(prefix) + len(items) + len(dataSuffix))}
}

// itemsJSON returns the JSON object of all items. For a snapshot that was
// not made by this package (a struct literal), it encodes Items as they are.
func (s *Snapshot) itemsJSON() []byte {
	if s.items != nil {
		return s.items
	}
	b := []byte{'{'}
	for i, k := range slices.Sorted(maps.Keys(s.Items)) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		if v := s.Items[k]; len(v) > 0 {
			b = append(b, v...)
		} else {
			b = append(b, "null"...)
		}
	}
	return append(b, '}')
}

// header returns the X-Yolk-Version header value.
func (s *Snapshot) header() []string {
	if s.versionHeader != nil {
		return s.versionHeader
	}
	return []string{s.Version}
}

// wireSnapshot is the wire form of a snapshot, for decoding.
type wireSnapshot struct {
	Version   string          `json:"version"`
	FetchedAt time.Time       `json:"fetchedAt"`
	Items     json.RawMessage `json:"items"`
}

// Encode returns the wire form of s for sending the whole snapshot on the
// bus: {"version":..,"fetchedAt":..,"items":{..}}, with the keys of items
// sorted. By and UpdatedAt are not part of it: the receiver sets its own with
// [Snapshot.WithBy]. Encode costs nothing: it returns the bytes s is stored
// in, which the caller must not modify.
func (s *Snapshot) Encode() []byte {
	if s.wire != nil {
		return s.wire
	}
	// not made by this package (a struct literal): build it now
	items := s.itemsJSON()
	b := make([]byte, 0, len(items)+len(s.Version)+64)
	b = append(b, `{"version":`...)
	b = appendString(b, s.Version)
	b = append(b, `,"fetchedAt":`...)
	b = appendTime(b, s.FetchedAt)
	b = append(b, `,"items":`...)
	b = append(b, items...)
	return append(b, '}')
}

// DecodeSnapshot decodes the wire form made by [Snapshot.Encode]. It checks
// what [NewSnapshot] checks, and that fetchedAt is set. Unknown fields are
// ignored. DecodeSnapshot does not keep b.
func DecodeSnapshot(b []byte) (*Snapshot, error) {
	var w wireSnapshot
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("cache: decode snapshot: %w", err)
	}
	if w.FetchedAt.IsZero() {
		return nil, errors.New("cache: decode snapshot: no fetchedAt")
	}
	if len(w.Items) == 0 {
		return nil, errors.New("cache: decode snapshot: no items")
	}
	s, err := newSnapshot(w.Version, w.FetchedAt, w.Items)
	if err != nil {
		return nil, fmt.Errorf("cache: decode snapshot: %w", err)
	}
	return s, nil
}

// WithBy returns a shallow copy of s labelled with what caused the update and
// when this process installed it. The copy shares the items of s.
func (s *Snapshot) WithBy(by string, now time.Time) *Snapshot {
	c := *s
	c.By = by
	c.UpdatedAt = now
	c.dataPrefix, c.dataLength = nil, nil
	if c.items != nil {
		c.setData()
	}
	return &c
}

// Newer reports whether s is newer than than: fetched later, or, if both were
// fetched at the same instant, of a different version that sorts after it
// (shorter versions first, then bytewise, so numeric versions compare as
// numbers). The tie-break makes Newer a strict order, so processes that see
// the same snapshots in different orders end on the same one. Any snapshot is
// newer than nil, and nil is never newer. A snapshot and its
// [Snapshot.WithBy] copies are not newer than each other.
func (s *Snapshot) Newer(than *Snapshot) bool {
	switch {
	case s == nil:
		return false
	case than == nil:
		return true
	}
	if c := s.FetchedAt.Compare(than.FetchedAt); c != 0 {
		return c > 0
	}
	if len(s.Version) != len(than.Version) {
		return len(s.Version) > len(than.Version)
	}
	return s.Version > than.Version
}

// Store holds the current snapshot of a process. Reads take no lock. The
// zero Store is empty and ready to use; a Store must not be copied after
// first use. It is safe for concurrent use.
type Store struct {
	p atomic.Pointer[Snapshot]
}

// Load returns the current snapshot, nil before the first successful
// [Store.Swap]. The caller must not modify it.
func (st *Store) Load() *Snapshot {
	return st.p.Load()
}

// Swap installs s if it is newer than the current snapshot (see
// [Snapshot.Newer]) and reports whether it did. Of snapshots swapped in
// concurrently, the newest one stays. Swap(nil) does nothing.
func (st *Store) Swap(s *Snapshot) bool {
	for {
		cur := st.p.Load()
		if !s.Newer(cur) {
			return false
		}
		if st.p.CompareAndSwap(cur, s) {
			return true
		}
	}
}

// appendTime appends t as a JSON string in RFC 3339 with nanoseconds, as
// time.Time's MarshalJSON does.
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendString appends s as a JSON string. Unlike encoding/json it does not
// escape <, > and &; invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
