package bustest

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// Record is one log record as a [Recorder] keeps it: its level, message and
// attributes (those of the logger included), each value as text.
type Record struct {
	Level   slog.Level
	Message string
	Attrs   map[string]string
}

func (r Record) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %q", r.Level, r.Message)
	for k, v := range r.Attrs {
		fmt.Fprintf(&b, " %s=%q", k, v)
	}
	return b.String()
}

// Recorder keeps every record logged through the loggers it returns, so that
// a test can wait for one: `the receiver logged that it dropped the message`.
// It is safe for concurrent use.
type Recorder struct {
	mu      sync.Mutex
	records []Record
	next    int           // where the next WaitFor starts
	changed chan struct{} // closed and replaced at each record
}

// NewRecorder returns a logger that writes to t's log (as [Logger] does) and
// keeps each record in the returned Recorder.
func NewRecorder(t testing.TB) (*slog.Logger, *Recorder) {
	r := &Recorder{changed: make(chan struct{})}
	return slog.New(slog.NewMultiHandler(Logger(t).Handler(), &recordHandler{r: r})), r
}

// Records returns a copy of the records kept so far.
func (r *Recorder) Records() []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Record(nil), r.records...)
}

// WaitFor waits until a record for which match is true has been kept after
// the one it returned last (from the first record on, the first time), and
// returns it; it fails t after timeout. what names the record in the failure.
func (r *Recorder) WaitFor(t testing.TB, timeout time.Duration, what string, match func(Record) bool) Record {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	r.mu.Lock()
	seen := r.next
	r.mu.Unlock()
	for {
		r.mu.Lock()
		for ; seen < len(r.records); seen++ {
			if rec := r.records[seen]; match(rec) {
				r.next = seen + 1
				r.mu.Unlock()
				return rec
			}
		}
		ch := r.changed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("no log record %s within %v", what, timeout)
			return Record{}
		}
	}
}

func (r *Recorder) add(rec Record) {
	r.mu.Lock()
	r.records = append(r.records, rec)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// recordHandler is the slog.Handler of a Recorder; groups are flattened
// into dotted keys.
type recordHandler struct {
	r      *Recorder
	attrs  []slog.Attr
	prefix string
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordHandler) Handle(_ context.Context, rec slog.Record) error {
	out := Record{Level: rec.Level, Message: rec.Message, Attrs: make(map[string]string)}
	for _, a := range h.attrs {
		addAttr(out.Attrs, "", a)
	}
	rec.Attrs(func(a slog.Attr) bool {
		addAttr(out.Attrs, h.prefix, a)
		return true
	})
	h.r.add(out)
	return nil
}

func addAttr(m map[string]string, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		for _, g := range v.Group() {
			addAttr(m, prefix+a.Key+".", g)
		}
		return
	}
	m[prefix+a.Key] = v.String()
}

func (h *recordHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append([]slog.Attr(nil), h.attrs...)
	for _, a := range as {
		c.attrs = append(c.attrs, slog.Attr{Key: h.prefix + a.Key, Value: a.Value})
	}
	return &c
}

func (h *recordHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.prefix = h.prefix + name + "."
	return &c
}
