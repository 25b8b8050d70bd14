// Package lease is a lease on one key of a NATS JetStream key-value bucket
// whose entries expire (the bucket's TTL): at most one holder at a time
// across every process that shares the bucket, wherever they run, and a
// fencing token that only grows.
//
// The bucket does all the work, with no clock compared between processes:
// a holder takes the lease by creating the key (which fails while another
// holds it), renews it by updating the key from the revision of its own last
// write (which fails once anyone else wrote), and loses it when it stops
// renewing for the bucket's TTL, after which the key is gone and another may
// create it. Every write is a new revision of the bucket, so the revision of
// the write that claimed a piece of work is a fencing token: a store that
// remembers the highest token it saw can refuse a late write from a holder
// that lost the lease without knowing.
package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Errors of Claim.
var (
	// ErrNotHeld: this process does not hold the lease (or lost it just now).
	ErrNotHeld = errors.New("lease: not held")
	// ErrDone: the tick was claimed already, by this holder or an earlier one.
	ErrDone = errors.New("lease: tick already claimed")
)

// State is what a Lease knows of its key.
type State struct {
	// Held is true while this process holds the lease.
	Held bool `json:"held"`
	// Holder is who holds it as last seen ("" when nobody does, or unknown).
	Holder string `json:"holder,omitempty"`
	// Fence is the revision of the holder's last write as last seen.
	Fence uint64 `json:"fence,omitempty"`
	// Reachable is false when the last try to reach the bucket failed (the
	// cluster is down, or this host's link to it): then nothing is held.
	Reachable bool `json:"reachable"`
}

// record is the key's value.
type record struct {
	Holder string `json:"holder"`
	Tick   uint64 `json:"tick,omitempty"` // the last tick claimed
}

// Lease is one process's side of a lease. Its methods are safe for
// concurrent use.
type Lease struct {
	open   func(context.Context) (jetstream.KeyValue, error)
	kv     jetstream.KeyValue // nil until open succeeds; guarded by mu
	key    string
	holder string
	ttl    atomic.Int64 // a time.Duration: the bucket's TTL

	mu       sync.Mutex
	rev      uint64 // revision of this holder's last write; 0 when not held
	tick     uint64 // the last tick claimed, as the key says
	state    State
	onChange []func(State)
	settled  chan struct{} // closed after the first try to take the lease
	reached  chan struct{} // closed once the bucket first answered
}

// New returns holder's side of the lease on key in kv, whose entries expire
// ttl after their last write (the bucket's TTL: give the same value). Hold
// takes and keeps it. The holder names this process in State.Holder, for
// people: the key's revision, not the name, decides who holds the lease.
func New(kv jetstream.KeyValue, key, holder string, ttl time.Duration) *Lease {
	l := &Lease{kv: kv, key: key, holder: holder, settled: make(chan struct{}), reached: make(chan struct{})}
	l.ttl.Store(int64(ttl))
	return l
}

// Open is New with a bucket opened when first needed, and opened again
// until that succeeds: for a process that may start while the bucket cannot
// be reached. The bucket's TTL, if it has one, replaces ttl.
func Open(open func(context.Context) (jetstream.KeyValue, error), key, holder string, ttl time.Duration) *Lease {
	l := &Lease{open: open, key: key, holder: holder, settled: make(chan struct{}), reached: make(chan struct{})}
	l.ttl.Store(int64(ttl))
	return l
}

// bucketLocked opens the bucket if needed. l.mu is held.
func (l *Lease) bucketLocked(ctx context.Context) bool {
	if l.kv != nil {
		return true
	}
	kv, err := l.open(ctx)
	if err != nil {
		return false
	}
	if st, err := kv.Status(ctx); err == nil && st.TTL() > 0 {
		l.ttl.Store(int64(st.TTL())) // the bucket's word, should another process have made it with another
	}
	l.kv = kv
	return true
}

// OnChange calls f, from Hold's goroutine, each time the State changes.
// Register before Hold.
func (l *Lease) OnChange(f func(State)) {
	l.mu.Lock()
	l.onChange = append(l.onChange, f)
	l.mu.Unlock()
}

// State returns what the lease knows now.
func (l *Lease) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

// Settled is closed once Hold has tried the bucket once.
func (l *Lease) Settled() <-chan struct{} { return l.settled }

// Reached is closed once the bucket first answered: the lease's State
// says who holds it from then on.
func (l *Lease) Reached() <-chan struct{} { return l.reached }

// Tries: a holder renews three times per TTL; the others look for a free
// key at most every TryEvery, so a dead holder's lease passes on within TTL
// plus TryEvery.
const TryEvery = 250 * time.Millisecond

// Hold takes the lease whenever it is free and renews it while held, until
// ctx ends; then it gives it up (see release), so another holder takes
// over at once rather than after the TTL.
func (l *Lease) Hold(ctx context.Context) {
	defer l.release()
	first := true
	for {
		l.try(ctx)
		if first {
			close(l.settled)
			first = false
		}
		wait := min(TryEvery, l.getTTL()/3)
		if l.State().Held {
			wait = l.getTTL() / 3
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// opTimeout bounds one write to the bucket: a reply later than a third of
// the TTL is no use to a holder.
func (l *Lease) opTimeout() time.Duration { return max(l.getTTL()/3, 100*time.Millisecond) }

func (l *Lease) getTTL() time.Duration { return time.Duration(l.ttl.Load()) }

// try renews the lease if held, else takes it if free.
func (l *Lease) try(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, l.opTimeout())
	defer cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.bucketLocked(ctx) {
		l.setLocked(State{})
		return
	}
	if l.rev != 0 {
		_ = l.writeLocked(ctx, l.tick) // a failure loses the lease
		return
	}
	val, _ := json.Marshal(record{Holder: l.holder})
	rev, err := l.kv.Create(ctx, l.key, val)
	switch {
	case err == nil:
		l.rev, l.tick = rev, 0
		l.setLocked(State{Held: true, Holder: l.holder, Fence: rev, Reachable: true})
	case errors.Is(err, jetstream.ErrKeyExists):
		if r, rev := l.readLocked(ctx); rev != 0 && r.Holder == "" {
			l.takeLocked(ctx, r, rev)
		}
	default:
		l.setLocked(State{})
	}
}

// writeLocked renews the lease, recording tick; on any failure the lease is
// lost. l.mu is held.
func (l *Lease) writeLocked(ctx context.Context, tick uint64) error {
	val, _ := json.Marshal(record{Holder: l.holder, Tick: tick})
	rev, err := l.kv.Update(ctx, l.key, val, l.rev)
	if err != nil {
		// Another wrote since (it took the expired key), or the key expired,
		// or the bucket cannot be reached: in every case another may hold
		// it by now, so this one does not.
		l.rev = 0
		if isCAS(err) {
			l.readLocked(ctx)
		} else {
			l.setLocked(State{})
		}
		return err
	}
	l.rev, l.tick = rev, tick
	l.setLocked(State{Held: true, Holder: l.holder, Fence: rev, Reachable: true})
	return nil
}

// takeLocked takes a lease its last holder gave up (r at revision rev),
// keeping the last tick it claimed. l.mu is held.
func (l *Lease) takeLocked(ctx context.Context, r record, rev uint64) {
	l.rev, l.tick = rev, r.Tick
	_ = l.writeLocked(ctx, r.Tick) // a failure leaves it not held
}

// readLocked records who holds the key, and returns its record and revision
// (0 if there is none). l.mu is held.
func (l *Lease) readLocked(ctx context.Context) (record, uint64) {
	var r record
	e, err := l.kv.Get(ctx, l.key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		l.setLocked(State{Reachable: true})
	case err != nil:
		l.setLocked(State{})
	default:
		if json.Unmarshal(e.Value(), &r) != nil {
			r = record{Holder: "?"} // held by nobody we know: it expires
		}
		l.setLocked(State{Holder: r.Holder, Fence: e.Revision(), Reachable: true})
		return r, e.Revision()
	}
	return r, 0
}

func isCAS(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted)
}

func (l *Lease) setLocked(s State) {
	if s.Reachable {
		select {
		case <-l.reached:
		default:
			close(l.reached)
		}
	}
	if s == l.state {
		return
	}
	l.state = s
	for _, f := range l.onChange {
		f(s)
	}
}

// Claim records tick as done by this holder, if it holds the lease and
// tick is later than every tick claimed before (by it or by an earlier
// holder), and returns the revision of that write: the fencing token of the
// work the tick stands for. Ticks are numbers every holder computes alike,
// such as the due time of a schedule's run. It fails with ErrNotHeld,
// ErrDone, or the bucket's error (then the lease is lost too).
func (l *Lease) Claim(ctx context.Context, tick uint64) (fence uint64, err error) {
	ctx, cancel := context.WithTimeout(ctx, l.opTimeout())
	defer cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rev == 0 {
		return 0, ErrNotHeld
	}
	if tick <= l.tick {
		return 0, fmt.Errorf("%w: tick %d, last %d", ErrDone, tick, l.tick)
	}
	if err := l.writeLocked(ctx, tick); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrNotHeld, err)
	}
	return l.rev, nil
}

// release gives the lease up, if this holder's write is still the key's
// last: a record without a holder, which keeps the last tick claimed for the
// next holder, who may take it at once.
func (l *Lease) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rev == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.opTimeout())
	defer cancel()
	val, _ := json.Marshal(record{Tick: l.tick})
	_, _ = l.kv.Update(ctx, l.key, val, l.rev) // else it expires
	l.rev = 0
	l.setLocked(State{Reachable: true})
}
