package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
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
	By        string                     // what caused the update: start, force, pull, push, catchup, retry
	UpdatedAt time.Time                  // when this process installed it (for people: it orders nothing)
	FetchedAt time.Time                  // when it was read from the remote (for people: it orders nothing)
	Items     map[string]json.RawMessage // key -> value, each a compact valid JSON value

	// Revision is the snapshot's place in the service's one order, given by
	// the shared store when it was published (see [Shared]); 0 until then.
	// A snapshot is newer than another exactly when its revision is higher.
	Revision uint64
	// Digest is "sha256:" and the hex SHA-256 of the items object (sorted
	// keys, compact values): two snapshots hold the same data exactly when
	// their digests are equal, whatever their versions say.
	Digest string
	// object names the object store entry of the items, for a snapshot
	// published with them there; "" when they are inline.
	object string

	// wire is the wire form, {"version":..,"digest":..,"fetchedAt":..,"items":{..}}, as
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
	buf.WriteString(`,"digest":`)
	digestAt := buf.Len() + 1
	buf.WriteString(`"` + strings.Repeat("0", len(digestPrefix)+2*sha256.Size) + `"`)
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
	digest := digestOf(buf.Bytes()[itemsStart:itemsEnd])
	copy(buf.Bytes()[digestAt:], digest)

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
		Digest:        digest,
		Items:         items,
		wire:          wire,
		items:         wire[itemsStart:itemsEnd:itemsEnd],
		versionHeader: []string{version},
	}
	s.setData()
	return s, nil
}

// digestPrefix starts a Digest.
const digestPrefix = "sha256:"

// digestOf returns the Digest of an items object.
func digestOf(items []byte) string {
	sum := sha256.Sum256(items)
	return digestPrefix + hex.EncodeToString(sum[:])
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
	Digest    string          `json:"digest"`
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
	b = append(b, `,"digest":`...)
	b = appendString(b, digestOf(items))
	b = append(b, `,"fetchedAt":`...)
	b = appendTime(b, s.FetchedAt)
	b = append(b, `,"items":`...)
	b = append(b, items...)
	return append(b, '}')
}

// DecodeSnapshot decodes the wire form made by [Snapshot.Encode]. It checks
// what [NewSnapshot] checks, that fetchedAt is set, and that the digest is
// that of the items. Unknown fields are ignored. DecodeSnapshot does not keep
// b.
func DecodeSnapshot(b []byte) (*Snapshot, error) {
	var w wireSnapshot
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("cache: decode snapshot: %w", err)
	}
	return w.snapshot()
}

// snapshot checks and decodes what DecodeSnapshot read.
func (w *wireSnapshot) snapshot() (*Snapshot, error) {
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
	if w.Digest != s.Digest {
		return nil, fmt.Errorf("cache: decode snapshot: digest %.80q, but the items' is %s", w.Digest, s.Digest)
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

// withRevision returns a shallow copy of s at revision rev.
func (s *Snapshot) withRevision(rev uint64) *Snapshot {
	c := *s
	c.Revision = rev
	return &c
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

// Swap installs s if its revision is higher than the current snapshot's
// (any snapshot replaces none) and reports whether it did. Of snapshots
// swapped in concurrently, the one of the highest revision stays. Swap(nil)
// does nothing. No clock is involved: see [Snapshot.Revision].
func (st *Store) Swap(s *Snapshot) bool {
	for {
		cur := st.p.Load()
		if s == nil || (cur != nil && s.Revision <= cur.Revision) {
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
