package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The stores of the service's shared copy, kept by the master (yolk.App.Stores).
const (
	Bucket      = "cache"         // key-value: the current snapshot's record, and the pull lease
	ObjectStore = "cache-objects" // the items of snapshots too large for a record
)

// The stores of a fleet's shared copy, on the NATS cluster (yolk.Store.Fleet),
// and the lease of the agent that reads the remote for every host.
const (
	FleetBucket      = "yolk-cache"
	FleetObjectStore = "yolk-cache-objects"
	FleetLease       = "cache"
)

// Keys of the bucket.
const (
	keySnapshot = "snapshot"
	keyPull     = "pull"
)

// InlineLimit is the largest items object stored inside the record itself;
// a larger one goes to the object store, which chunks it and checks its
// SHA-256, so no message comes near the bus's payload limit (1 MiB).
const InlineLimit = 768 << 10

// ErrConflict is returned by [Shared.Publish] when the shared snapshot is no
// longer the one the caller based its read of the remote on: someone
// published meanwhile, and the caller's data may be older than theirs.
var ErrConflict = errors.New("cache: the shared snapshot changed meanwhile")

// Shared is the service's copy of the data set on the bus, the one authority
// that orders snapshots: every snapshot that reaches a worker was published
// here first, under a revision the bus gives and that only grows (a
// key-value entry's revision). Publishing is compare-and-set on the revision
// the publisher's read of the remote started from, so a slow read of old data
// can never overwrite a newer one, and no clock orders anything. The record
// carries the digest of the items: readers check it, and compare snapshots by
// revision and digest, never by version name alone.
//
// The bytes a worker serves are the items as the publisher encoded them,
// whichever way they arrive (a watch, a catch-up, a start): the record is
// written with [Snapshot.Encode], which escapes nothing that need not be.
type Shared struct {
	open func(context.Context) (jetstream.KeyValue, jetstream.ObjectStore, error)
	mu   sync.Mutex // guards kv and obj while open is set
	kv   jetstream.KeyValue
	obj  jetstream.ObjectStore
}

// NewShared returns the shared copy in kv (the bucket [Bucket]) and obj (the
// object store [ObjectStore]).
func NewShared(kv jetstream.KeyValue, obj jetstream.ObjectStore) *Shared {
	return &Shared{kv: kv, obj: obj}
}

// OpenShared returns a shared copy whose stores open calls, when first
// needed and again until it succeeds: for the fleet's copy on a cluster
// that may be out of reach when the agent starts. Until then every method
// fails with open's error.
func OpenShared(open func(context.Context) (jetstream.KeyValue, jetstream.ObjectStore, error)) *Shared {
	return &Shared{open: open}
}

// bind returns the stores, opening them if they are not yet.
func (sh *Shared) bind(ctx context.Context) (jetstream.KeyValue, jetstream.ObjectStore, error) {
	if sh.open == nil {
		return sh.kv, sh.obj, nil
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.kv != nil {
		return sh.kv, sh.obj, nil
	}
	kv, obj, err := sh.open(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("cache: open the shared copy: %w", err)
	}
	sh.kv, sh.obj = kv, obj
	return kv, obj, nil
}

// record is a key-value entry of the snapshot key: the snapshot's wire form
// (see [Snapshot.Encode]) and the cause of the update; when the items are in
// the object store, Object names them and Items is absent.
type record struct {
	wireSnapshot
	By     string `json:"by"`
	Object string `json:"object,omitempty"`
	Size   int    `json:"size,omitempty"`
}

// entry returns the latest entry of the snapshot key, nil if there is none.
func (sh *Shared) entry(ctx context.Context) (jetstream.KeyValueEntry, error) {
	kv, _, err := sh.bind(ctx)
	if err != nil {
		return nil, err
	}
	e, err := kv.Get(ctx, keySnapshot)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("cache: read the shared snapshot: %w", err)
	}
	return e, nil
}

// Latest returns the shared snapshot, nil if none was published yet or if its
// entry does not decode (err says why), and in any case the entry as a base to
// publish on.
func (sh *Shared) Latest(ctx context.Context) (*Snapshot, Head, error) {
	e, err := sh.entry(ctx)
	if err != nil || e == nil {
		return nil, Head{}, err
	}
	s, err := sh.load(ctx, e)
	if err != nil {
		return nil, Head{Revision: e.Revision()}, err
	}
	return s, Head{Revision: s.Revision, object: s.object}, nil
}

// load decodes an entry of the snapshot key, reading its items from the
// object store when they are not inline. The entry is parsed once.
func (sh *Shared) load(ctx context.Context, e jetstream.KeyValueEntry) (*Snapshot, error) {
	var rec record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return nil, fmt.Errorf("cache: shared snapshot at revision %d: %w", e.Revision(), err)
	}
	if !refreshBy[rec.By] {
		return nil, fmt.Errorf("cache: shared snapshot at revision %d: unknown cause %.40q", e.Revision(), rec.By)
	}
	if rec.Object != "" {
		_, obj, _ := sh.bind(ctx) // bound: the entry came from the bucket
		if obj == nil {
			return nil, fmt.Errorf("cache: shared snapshot at revision %d: items in object %s, and no object store", e.Revision(), rec.Object)
		}
		items, err := obj.GetBytes(ctx, rec.Object)
		if err != nil {
			return nil, fmt.Errorf("cache: shared snapshot at revision %d: items %s: %w", e.Revision(), rec.Object, err)
		}
		if len(items) != rec.Size {
			return nil, fmt.Errorf("cache: shared snapshot at revision %d: items of %d bytes, want %d", e.Revision(), len(items), rec.Size)
		}
		rec.Items = items
	}
	s, err := rec.snapshot()
	if err != nil {
		return nil, fmt.Errorf("cache: shared snapshot at revision %d: %w", e.Revision(), err)
	}
	s = s.withRevision(e.Revision())
	s.By = rec.By
	s.object = rec.Object
	return s, nil
}

// Head is the shared snapshot's latest entry, as the base of a publish.
type Head struct {
	Revision uint64 // 0: no entry
	object   string // where its items are, if in the object store
}

// Head returns the shared snapshot's latest entry: the base to publish a read of
// the remote that starts now. It is taken from the bucket, not from what a watch
// delivered last: the bucket may have started over (a master that restarted), or
// hold an entry that does not decode, which a read of the remote rightly
// replaces.
func (sh *Shared) Head(ctx context.Context) (Head, error) {
	e, err := sh.entry(ctx)
	if err != nil || e == nil {
		return Head{}, err
	}
	var rec record
	_ = json.Unmarshal(e.Value(), &rec) // garbage has no object to retire
	return Head{Revision: e.Revision(), object: rec.Object}, nil
}

// Publish makes s, labelled by, the shared snapshot, if the shared one is still
// base, and returns s at its new revision. It returns ErrConflict if another was
// published since. The items of base in the object store, if any, are deleted:
// readers still copying them fail and read the latest entry again.
func (sh *Shared) Publish(ctx context.Context, s *Snapshot, by string, base Head) (*Snapshot, error) {
	if !refreshBy[by] {
		return nil, fmt.Errorf("cache: publish: unknown cause %q", by)
	}
	kv, obj, err := sh.bind(ctx)
	if err != nil {
		return nil, err
	}
	var rec []byte
	object := ""
	if items := s.itemsJSON(); len(items) > InlineLimit {
		object = "items-" + randomName()
		if _, err := obj.PutBytes(ctx, object, items); err != nil {
			return nil, fmt.Errorf("cache: publish %s: store the items: %w", s.Version, err)
		}
		rec = appendRecordHead(nil, by, s)
		rec = append(rec, `,"object":`...)
		rec = appendString(rec, object)
		rec = append(rec, `,"size":`...)
		rec = fmt.Appendf(rec, "%d}", len(items))
	} else {
		enc := s.Encode()
		rec = appendString(append(make([]byte, 0, len(enc)+32), `{"by":`...), by)
		rec = append(append(rec, ','), enc[1:]...)
	}
	var rev uint64
	if base.Revision == 0 {
		rev, err = kv.Create(ctx, keySnapshot, rec)
	} else {
		rev, err = kv.Update(ctx, keySnapshot, rec, base.Revision)
	}
	if err != nil {
		if object != "" {
			sh.deleteObject(object)
		}
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil, ErrConflict
		}
		return nil, fmt.Errorf("cache: publish %s: %w", s.Version, err)
	}
	if base.object != "" && base.object != object {
		sh.deleteObject(base.object)
	}
	p := s.withRevision(rev)
	p.By, p.object = by, object
	return p, nil
}

// appendRecordHead appends a record up to its digest, without the closing
// brace: {"by":..,"version":..,"digest":..,"fetchedAt":..
func appendRecordHead(b []byte, by string, s *Snapshot) []byte {
	b = append(b, `{"by":`...)
	b = appendString(b, by)
	b = append(b, `,"version":`...)
	b = appendString(b, s.Version)
	b = append(b, `,"digest":`...)
	b = appendString(b, s.Digest)
	b = append(b, `,"fetchedAt":`...)
	return appendTime(b, s.FetchedAt)
}

func (sh *Shared) deleteObject(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, obj, err := sh.bind(ctx); err == nil {
		_ = obj.Delete(ctx, name) // an orphan costs memory, not correctness
	}
}

func randomName() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// errWatch marks the errors Follow reports when a watch ended, which it then
// starts again, from those of entries that do not decode.
var errWatch = errors.New("cache: the watch of the shared snapshot ended; watching again")

// Follow runs Watch until ctx is done, again after it ends and whenever
// restart delivers (after a reconnect to the bus: the bucket may have started
// over with a restarted master, and a watch resumes after the last revision it
// saw, so it must start again from the latest entry). followed is called once,
// when the first watch has delivered what there was.
func (sh *Shared) Follow(ctx context.Context, restart <-chan struct{}, install func(s *Snapshot, first bool), bad func(error), followed func()) {
	var once sync.Once
	initial := func() { once.Do(followed) }
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- sh.Watch(wctx, install, bad, initial) }()
		var err error
		select {
		case err = <-done:
		case <-restart:
			cancel()
			<-done
			cancel()
			continue
		}
		cancel()
		if err != nil && ctx.Err() == nil {
			bad(fmt.Errorf("%w: %w", errWatch, err))
			select {
			case <-ctx.Done():
			case <-time.After(minRetry):
			}
		}
	}
}

// Watch calls install with every snapshot published from now on, starting
// with the current one if any (first is set for that one), in revision order,
// until ctx is done. After a reconnect to the bus the watch resumes after the
// last revision it delivered (see Follow for a bucket that started over). An
// entry that does not decode is reported to bad and skipped: the last good
// snapshot keeps serving. initial is called once the current snapshot (or its
// absence) has been delivered.
func (sh *Shared) Watch(ctx context.Context, install func(s *Snapshot, first bool), bad func(error), initial func()) error {
	kv, _, err := sh.bind(ctx)
	if err != nil {
		return err
	}
	w, err := kv.Watch(ctx, keySnapshot)
	if err != nil {
		return fmt.Errorf("cache: watch the shared snapshot: %w", err)
	}
	defer w.Stop()
	first := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("cache: the watch of the shared snapshot ended")
			}
			if e == nil {
				if initial != nil {
					initial()
					initial = nil
				}
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				continue
			}
			s, err := sh.load(ctx, e)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				bad(err)
				first = false
				continue
			}
			install(s, first)
			first = false
		}
	}
}

// TakePull claims this pull interval for the caller: it returns true if the
// pull lease is still at revision seen (nobody pulled since the caller's last
// look) and the caller moved it on, and in any case the lease's revision, to
// pass next time. Each worker looks once per pull interval: the first to look
// after the last pull takes it, the others find the lease moved and skip, so
// one of them pulls per interval, chosen without the agent.
func (sh *Shared) TakePull(ctx context.Context, seen uint64, who string) (bool, uint64, error) {
	kv, _, err := sh.bind(ctx)
	if err != nil {
		return false, seen, err
	}
	e, err := kv.Get(ctx, keyPull)
	var cur uint64
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return false, seen, fmt.Errorf("cache: read the pull lease: %w", err)
	default:
		cur = e.Revision()
	}
	if cur != seen {
		return false, cur, nil
	}
	var rev uint64
	if cur == 0 {
		rev, err = kv.Create(ctx, keyPull, []byte(who))
	} else {
		rev, err = kv.Update(ctx, keyPull, []byte(who), cur)
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return false, seen, nil // another took it: look again next time
		}
		return false, seen, fmt.Errorf("cache: take the pull lease: %w", err)
	}
	return true, rev, nil
}
