package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/yolkgo/yolk/bus"
)

// The refresh protocol, on the bus:
//
//   - The agent's Hub is the only process that reads the remote source in normal
//     operation: pushes, pull checks and force runs all become one fetch loop in the
//     agent, which coalesces whatever arrives while a fetch is in flight into one more.
//   - A new snapshot travels to every worker in a "refresh" event (SendToApp) that
//     names its version; it carries the snapshot inline when it fits InlineLimit,
//     otherwise receivers copy it from the holder in chunks ("snapshot" requests).
//   - A worker with that version already ignores the event. A worker that starts or
//     reconnects asks the agent for its snapshot (catch-up), so nobody stays stale
//     because an at-most-once event was missed.
//   - Only when the agent cannot be reached does a worker read the remote itself.

// Bus events and requests of the refresh protocol.
const (
	EventRefresh  = "refresh"  // SendToApp: a new snapshot, inline or by reference
	EventSnapshot = "snapshot" // Request: a chunk of the holder's current snapshot
	EventFetch    = "fetch"    // Request to the agent: check (pull) or fetch (force) the remote now
	EventVersion  = "version"  // Gather: which version each worker holds
)

// InlineLimit is the largest encoded snapshot sent inside a refresh event. Larger
// snapshots are copied from their holder in chunks of ChunkSize, so no message comes
// near the bus's payload limit (1 MiB).
const (
	InlineLimit = 256 << 10
	ChunkSize   = 512 << 10
)

// Refresh is the body of a refresh event.
type Refresh struct {
	By        string          `json:"by"`
	Version   string          `json:"version"`
	FetchedAt time.Time       `json:"fetchedAt"`
	Holder    string          `json:"holder"`
	Snapshot  json.RawMessage `json:"snapshot,omitempty"` // Snapshot.Encode, when it fits InlineLimit
}

// refreshBy are the causes a refresh event may name: they label metrics, so a
// sender may not make up new ones.
var refreshBy = map[string]bool{"start": true, "push": true, "pull": true, "force": true, "retry": true, "catchup": true}

// decodeRefresh decodes the body of a refresh event and checks what a receiver
// relies on: a known cause, a well-formed version, and a holder to copy from
// when the snapshot is not inline. The snapshot itself is checked when decoded.
func decodeRefresh(data []byte) (Refresh, error) {
	var r Refresh
	if err := json.Unmarshal(data, &r); err != nil {
		return r, err
	}
	if !refreshBy[r.By] {
		return r, fmt.Errorf("unknown cause %.40q", r.By)
	}
	if err := checkVersion(r.Version); err != nil {
		return r, err
	}
	if len(r.Snapshot) == 0 {
		if err := bus.ValidID(r.Holder); err != nil {
			return r, fmt.Errorf("holder: %w", err)
		}
	}
	return r, nil
}

// chunkRequest asks a holder for part of its current snapshot.
type chunkRequest struct {
	Have   string `json:"have,omitempty"` // the asker's version: no data is sent when it is current
	Offset int    `json:"offset"`
	// Of names the snapshot the asker is copying (after the first chunk): when the
	// holder's current one is another, the reply starts that one from offset 0.
	Of *snapshotID `json:"of,omitempty"`
}

// snapshotID tells snapshots apart, even two of one version (a source that
// served other data under the same ETag).
type snapshotID struct {
	Version   string    `json:"version"`
	FetchedAt time.Time `json:"fetchedAt"`
}

func idOf(s *Snapshot) snapshotID { return snapshotID{Version: s.Version, FetchedAt: s.FetchedAt} }

// is compares instants, not time zones: a time read back from JSON is in UTC.
func (id snapshotID) is(other snapshotID) bool {
	return id.Version == other.Version && id.FetchedAt.Equal(other.FetchedAt)
}

// chunkReply is part of a holder's current snapshot.
type chunkReply struct {
	Version   string    `json:"version"` // empty: the holder has no snapshot yet
	FetchedAt time.Time `json:"fetchedAt"`
	Total     int       `json:"total"`
	Offset    int       `json:"offset"`
	Current   bool      `json:"current,omitempty"` // the asker already has Version
	Data      []byte    `json:"data,omitempty"`
}

// fetchRequest asks the agent to read the remote now.
type fetchRequest struct {
	By  string `json:"by"`  // pull: a conditional check; force: a full fetch
	Seq uint64 `json:"seq"` // the schedule run; one fetch per force run however many workers ask
}

// fetchReply says what the agent holds after the fetch.
type fetchReply struct {
	Version string `json:"version"`
	Changed bool   `json:"changed"`
	Err     string `json:"err,omitempty"`
}

// announce builds the refresh event for s held by holder.
func announce(s *Snapshot, by, holder string) Refresh {
	r := Refresh{By: by, Version: s.Version, FetchedAt: s.FetchedAt, Holder: holder}
	if enc := s.Encode(); len(enc) <= InlineLimit {
		r.Snapshot = enc
	}
	return r
}

// serveChunks answers snapshot requests from the store's current snapshot.
func serveChunks(store *Store) bus.Handler {
	return func(_ context.Context, m bus.Message) (any, error) {
		var req chunkRequest
		if err := m.Decode(&req); err != nil {
			return nil, fmt.Errorf("cache: bad snapshot request: %w", err)
		}
		s := store.Load()
		if s == nil {
			return chunkReply{}, nil
		}
		if req.Have == s.Version {
			return chunkReply{Version: s.Version, FetchedAt: s.FetchedAt, Current: true}, nil
		}
		enc := s.Encode()
		offset := req.Offset
		if req.Of == nil || !req.Of.is(idOf(s)) {
			offset = 0 // a first request, or the holder moved on: start over
		}
		if offset < 0 || offset > len(enc) {
			return nil, fmt.Errorf("cache: offset %d outside snapshot of %d bytes", offset, len(enc))
		}
		end := min(offset+ChunkSize, len(enc))
		return chunkReply{Version: s.Version, FetchedAt: s.FetchedAt, Total: len(enc), Offset: offset, Data: enc[offset:end]}, nil
	}
}

// errNoSnapshot says the holder has no snapshot yet.
var errNoSnapshot = errors.New("cache: the holder has no snapshot yet")

// versionInfo answers EventVersion.
type versionInfo struct {
	Version   string    `json:"version"`
	FetchedAt time.Time `json:"fetchedAt"`
}

func serveVersion(store *Store) bus.Handler {
	return func(context.Context, bus.Message) (any, error) {
		s := store.Load()
		if s == nil {
			return versionInfo{}, nil
		}
		return versionInfo{Version: s.Version, FetchedAt: s.FetchedAt}, nil
	}
}

// asker sends one snapshot request to a holder.
type asker func(ctx context.Context, req chunkRequest) (bus.Message, error)

func askProcess(conn Messenger, id string) asker {
	return func(ctx context.Context, req chunkRequest) (bus.Message, error) {
		return conn.Request(ctx, id, EventSnapshot, req)
	}
}

func askAgent(conn Messenger) asker {
	return func(ctx context.Context, req chunkRequest) (bus.Message, error) {
		return conn.RequestAgent(ctx, EventSnapshot, req)
	}
}

// Bounds of a copy over the bus. A holder's answers are not trusted: a wrong or
// hostile total must not make the receiver allocate it, and a holder that keeps
// answering must not hold up the receiver's refreshes for ever.
const (
	maxCopyBytes = 1 << 30 // the largest snapshot copied
	maxPrealloc  = 8 << 20 // allocated ahead of the chunks that fill it
	copyTimeout  = time.Minute
)

// copyFrom copies the current snapshot of a holder over the bus. It returns nil and
// no error when the holder's version is have.
func copyFrom(ctx context.Context, ask asker, holder, have string) (*Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, copyTimeout)
	defer cancel()
	var buf []byte
	var of *snapshotID
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		m, err := ask(rctx, chunkRequest{Have: have, Offset: len(buf), Of: of})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("cache: copy snapshot from %s: %w", holder, err)
		}
		var r chunkReply
		if err := m.Decode(&r); err != nil {
			return nil, fmt.Errorf("cache: copy snapshot from %s: %w", holder, err)
		}
		switch {
		case r.Version == "":
			return nil, errNoSnapshot
		case r.Current:
			return nil, nil
		case r.Total < 0 || r.Total > maxCopyBytes || r.Offset < 0 || len(r.Data) > r.Total-r.Offset ||
			(len(r.Data) == 0 && r.Offset < r.Total):
			return nil, fmt.Errorf("cache: copy snapshot from %s: bad chunk of %d bytes at %d of %d", holder, len(r.Data), r.Offset, r.Total)
		case r.Offset != len(buf):
			if r.Offset != 0 {
				return nil, fmt.Errorf("cache: copy snapshot from %s: chunk at %d, want %d", holder, r.Offset, len(buf))
			}
			buf = buf[:0] // the holder moved on while we copied: start over with its new one
		}
		of = &snapshotID{Version: r.Version, FetchedAt: r.FetchedAt}
		if buf == nil {
			buf = make([]byte, 0, min(r.Total, maxPrealloc))
		}
		buf = append(buf, r.Data...)
		if len(buf) >= r.Total || len(r.Data) == 0 {
			break
		}
	}
	s, err := DecodeSnapshot(buf)
	if err != nil {
		return nil, fmt.Errorf("cache: copy snapshot from %s: %w", holder, err)
	}
	return s, nil
}

// stale reports whether a refresh event brings nothing newer than have: the same
// version fetched no later, or another version fetched earlier. A zero FetchedAt
// marks a hint: it names a version without saying when it was fetched.
func stale(r Refresh, have *Snapshot) bool {
	switch {
	case have == nil:
		return false
	case have.Version == r.Version:
		// the same version fetched again later differs only when the source
		// served other data under it (a wrong ETag): take the later one
		return !r.FetchedAt.After(have.FetchedAt)
	default:
		return !r.FetchedAt.IsZero() && !r.FetchedAt.After(have.FetchedAt)
	}
}

// receive turns a refresh event into a snapshot: inline, or copied from its holder.
// It returns nil when the event brings nothing newer than have.
func receive(ctx context.Context, conn Messenger, r Refresh, have *Snapshot) (*Snapshot, error) {
	if stale(r, have) {
		return nil, nil
	}
	if len(r.Snapshot) > 0 {
		return DecodeSnapshot(r.Snapshot)
	}
	hv := ""
	if have != nil && have.Version != r.Version {
		hv = have.Version
	}
	return copyFrom(ctx, askProcess(conn, r.Holder), r.Holder, hv)
}

// signal wakes waiters whenever notify is called; the zero value is ready to use.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns a channel closed at the next notify.
func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}
