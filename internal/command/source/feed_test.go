package source

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
)

// subscribe connects to the source's broker over TCP and subscribes to subject.
func subscribe(t *testing.T, in *instance, subject string) *nats.Subscription {
	t.Helper()
	nc, err := nats.Connect("nats://"+in.nats, nats.Timeout(waitLong))
	if err != nil {
		t.Fatalf("connect to the feed at %s: %v", in.nats, err)
	}
	t.Cleanup(nc.Close)
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil { // the subscription is in place
		t.Fatal(err)
	}
	return sub
}

// nextVersion waits for the next change event and returns its version.
func nextVersion(t *testing.T, sub *nats.Subscription) string {
	t.Helper()
	msg, err := sub.NextMsg(waitLong)
	if err != nil {
		t.Fatalf("next change event on %s: %v", sub.Subject, err)
	}
	var ev struct {
		Version string `json:"version"`
	}
	dec := json.NewDecoder(bytes.NewReader(msg.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil || ev.Version == "" {
		t.Fatalf("change event %q: %v, want {\"version\":\"...\"}", msg.Data, err)
	}
	return ev.Version
}

func TestFeedPublishesChanges(t *testing.T) {
	in := start(t, "SOURCE_SUBJECT=test.changes")
	sub := subscribe(t, in, "test.changes")

	steps := []struct {
		method, path, body string
	}{
		{http.MethodPut, "/data/a", `{"x":1}`},
		{http.MethodDelete, "/data/k5", ""},
		{http.MethodPut, "/data/a", `2`},
	}
	for i, step := range steps {
		want := strconv.Itoa(i + 2)
		if got := decodeVersion(t, do(t, step.method, in.url(step.path), step.body, nil)); got != want {
			t.Fatalf("%s %s: version %q, want %q", step.method, step.path, got, want)
		}
		if got := nextVersion(t, sub); got != want {
			t.Errorf("change event after %s %s: version %q, want %q", step.method, step.path, got, want)
		}
	}
	// A refused write publishes nothing.
	readAll(t, do(t, http.MethodDelete, in.url("/data/k5"), "", nil))
	readAll(t, do(t, http.MethodPut, in.url("/data/a"), "{", nil))
	if msg, err := sub.NextMsg(0); err == nil {
		t.Errorf("change event %q after refused writes, want none", msg.Data)
	}
}

// TestFeedAfterVisible checks that a change is visible over HTTP once its event
// arrives: a consumer that fetches on the event gets that version or a later one.
func TestFeedAfterVisible(t *testing.T) {
	in := start(t, "SOURCE_CHANGE_EVERY=1ms", "SOURCE_KEYS=3")
	sub := subscribe(t, in, "source.changed")
	for range 20 {
		v, _ := strconv.Atoi(nextVersion(t, sub))
		_, etag, _ := getData(t, in, "")
		got, err := strconv.Atoi(etag[1 : len(etag)-1])
		if err != nil || got < v {
			t.Fatalf("GET /data after the event for version %d: ETag %s, want %d or later", v, etag, v)
		}
	}
}

func TestChangeEvery(t *testing.T) {
	in := start(t, "SOURCE_CHANGE_EVERY=5ms", "SOURCE_KEYS=4")
	sub := subscribe(t, in, "source.changed")
	_, _, before := getData(t, in, "")
	last := 0
	for range 5 {
		v, err := strconv.Atoi(nextVersion(t, sub))
		if err != nil || v <= last {
			t.Fatalf("timed change event: version %d (%v) after %d, want a larger one", v, err, last)
		}
		last = v
	}
	var rec struct{ By, Key string }
	in.waitLog(t, "data changed", &rec)
	if rec.By != "timer" {
		t.Errorf("data changed record: by %q, want timer", rec.By)
	}
	_, _, after := getData(t, in, "")
	if len(after) != 4 {
		t.Errorf("GET /data after timed changes: %d keys, want 4", len(after))
	}
	changed := 0
	for k, v := range after {
		if string(before[k]) != string(v) {
			changed++
		}
	}
	if changed == 0 {
		t.Errorf("GET /data after %d timed changes: no value differs from the start", last-1)
	}
}
