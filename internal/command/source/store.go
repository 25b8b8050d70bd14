package source

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
)

// maxKeyLen is the longest key PUT /data/{key} accepts.
const maxKeyLen = 256

// errBadKey is returned for a key outside 1..256 characters of [A-Za-z0-9_.-].
var errBadKey = errors.New("key must be 1 to 256 characters of A-Z a-z 0-9 _ . -")

// validKey reports whether key may name an entry of the data set.
func validKey(key string) bool {
	if len(key) == 0 || len(key) > maxKeyLen {
		return false
	}
	for i := 0; i < len(key); i++ {
		switch c := key[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}

// snapshot is one version of the data set as GET /data serves it. It is never
// modified once published, so readers share it without locks.
type snapshot struct {
	version string // decimal, strictly increasing
	etag    string // the version in double quotes
	body    []byte // the JSON object of key to value, encoded once
}

// change describes one accepted write, for the log and the change feed.
type change struct {
	Version string
	Op      string // "put" or "delete"
	Key     string
	By      string // "http" or "timer"
}

// store is the data set. Writes are serialised by a mutex; reads load the current
// snapshot from an atomic pointer and never wait. It is safe for concurrent use.
type store struct {
	mu      sync.Mutex
	data    map[string]json.RawMessage // guarded by mu; values are compact JSON
	version uint64                     // guarded by mu
	changed func(change)               // called with mu held, after the snapshot is visible

	cur atomic.Pointer[snapshot]
}

// newStore returns a store holding initial at version 1. changed, if not nil, is
// called after each write once the new snapshot is visible to readers; the calls
// are serialised and come in version order. initial must hold valid JSON values.
func newStore(initial map[string]json.RawMessage, changed func(change)) (*store, error) {
	s := &store{data: make(map[string]json.RawMessage, len(initial)), changed: changed}
	for k, v := range initial {
		var buf bytes.Buffer
		if err := json.Compact(&buf, v); err != nil {
			return nil, fmt.Errorf("initial value of %q: %w", k, err)
		}
		s.data[k] = buf.Bytes()
	}
	if err := s.publishLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

// Snapshot returns the current version of the data set.
func (s *store) Snapshot() *snapshot { return s.cur.Load() }

// Put sets key to value, a JSON document, and returns the new version. It fails
// for a key that validKey rejects and for a value that is not valid JSON.
func (s *store) Put(key string, value []byte, by string) (string, error) {
	if !validKey(key) {
		return "", errBadKey
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, value); err != nil {
		return "", fmt.Errorf("value is not valid JSON: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.data[key]
	s.data[key] = buf.Bytes()
	if err := s.publishLocked(); err != nil {
		if had {
			s.data[key] = old
		} else {
			delete(s.data, key)
		}
		return "", err
	}
	return s.notifyLocked("put", key, by), nil
}

// Delete removes key and returns the new version. ok is false, and nothing
// changes, when key is absent.
func (s *store) Delete(key, by string) (version string, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.data[key]
	if !had {
		return "", false, nil
	}
	delete(s.data, key)
	if err := s.publishLocked(); err != nil {
		s.data[key] = old
		return "", true, err
	}
	return s.notifyLocked("delete", key, by), true, nil
}

// publishLocked encodes the data set as the next version and makes it current.
func (s *store) publishLocked() error {
	// Keys sorted: the same data gives the same bytes. And the values as they
	// were stored: json.Marshal would escape <, > and & in them.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s.data); err != nil {
		return fmt.Errorf("encode data: %w", err)
	}
	body := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	s.version++
	v := strconv.FormatUint(s.version, 10)
	s.cur.Store(&snapshot{version: v, etag: `"` + v + `"`, body: body})
	return nil
}

func (s *store) notifyLocked(op, key, by string) string {
	v := s.cur.Load().version
	if s.changed != nil {
		s.changed(change{Version: v, Op: op, Key: key, By: by})
	}
	return v
}

// initialData is the data set a source starts with: n keys k0..k<n-1> with small
// JSON objects as values.
func initialData(n int) map[string]json.RawMessage {
	data := make(map[string]json.RawMessage, n)
	for i := range n {
		data["k"+strconv.Itoa(i)] = json.RawMessage(fmt.Sprintf(`{"name":"item %d","n":%d}`, i, i))
	}
	return data
}
