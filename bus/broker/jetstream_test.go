package broker_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/broker"
	"github.com/yolkgo/yolk/bus/bustest"
)

// The agent and workers read and write the entries of the configured stores
// (a key-value bucket and an object store), and can neither manage JetStream
// nor reach another bucket; the control credential reaches no store.
func TestStoresAreTheChildrensEntriesOnly(t *testing.T) {
	b := bustest.NewBrokerWith(t, broker.Config{Stores: []broker.Store{{Name: "data"}, {Name: "blobs", Objects: true}}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	agent := bustest.Dial(t, b, bus.RoleAgent, "a1")
	worker := bustest.Dial(t, b, bus.RoleWorker, "w1")
	ajs, err := agent.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	wjs, _ := worker.JetStream()

	akv, err := ajs.KeyValue(ctx, "data")
	if err != nil {
		t.Fatalf("agent binds the bucket: %v", err)
	}
	wkv, err := wjs.KeyValue(ctx, "data")
	if err != nil {
		t.Fatalf("worker binds the bucket: %v", err)
	}
	watch, err := wkv.Watch(ctx, "snapshot")
	if err != nil {
		t.Fatalf("worker watches: %v", err)
	}
	defer watch.Stop()
	rev, err := akv.Create(ctx, "snapshot", []byte("one"))
	if err != nil {
		t.Fatalf("agent creates an entry: %v", err)
	}
	if _, err := wkv.Update(ctx, "snapshot", []byte("stale"), rev-1); err == nil {
		t.Error("an update from an old revision succeeded")
	}
	if _, err := wkv.Update(ctx, "snapshot", []byte("two"), rev); err != nil {
		t.Fatalf("worker updates from the current revision: %v", err)
	}
	var got []string
	for len(got) < 2 {
		select {
		case e := <-watch.Updates():
			if e != nil {
				got = append(got, string(e.Value()))
			}
		case <-ctx.Done():
			t.Fatalf("watch saw %q, want one and two", got)
		}
	}
	if got[0] != "one" || got[1] != "two" {
		t.Errorf("watch saw %q, want [one two]", got)
	}

	obj, err := ajs.ObjectStore(ctx, "blobs")
	if err != nil {
		t.Fatalf("agent binds the object store: %v", err)
	}
	big := bytes.Repeat([]byte("<&>é"), 600<<10)
	if _, err := obj.PutBytes(ctx, "big", big); err != nil {
		t.Fatalf("agent puts an object: %v", err)
	}
	wobj, err := wjs.ObjectStore(ctx, "blobs")
	if err != nil {
		t.Fatalf("worker binds the object store: %v", err)
	}
	back, err := wobj.GetBytes(ctx, "big")
	if err != nil || !bytes.Equal(back, big) {
		t.Fatalf("worker gets the object: %d bytes, %v; want %d bytes", len(back), err, len(big))
	}
	if err := wobj.Delete(ctx, "big"); err != nil {
		t.Errorf("worker deletes an object: %v", err)
	}

	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	if err := wjs.DeleteKeyValue(short, "data"); err == nil {
		t.Error("a worker deleted the bucket")
	}
	if _, err := ajs.CreateKeyValue(short, jetstream.KeyValueConfig{Bucket: "other"}); err == nil {
		t.Error("the agent created a bucket")
	}
	if _, err := wjs.KeyValue(short, "other"); err == nil {
		t.Error("a worker bound a bucket that is not configured")
	}

	ctl := bustest.Dial(t, b, bus.RoleControl, "c1")
	cjs, _ := ctl.JetStream()
	if _, err := cjs.KeyValue(short, "data"); err == nil {
		t.Error("the control credential bound the bucket")
	}
	if e, err := akv.Get(ctx, "snapshot"); err != nil || string(e.Value()) != "two" {
		t.Errorf("after all that the entry is %v, %v; want two", e, err)
	}
}

// A bad store name fails Start with an error naming it.
func TestStoresBadName(t *testing.T) {
	for _, stores := range [][]broker.Store{{{Name: ""}}, {{Name: "a.b"}}, {{Name: "x"}, {Name: "x", Objects: true}}} {
		if b, err := broker.Start(broker.Config{Port: -1, Logger: bustest.Logger(t), Stores: stores}); err == nil {
			b.Shutdown()
			t.Errorf("Start with stores %+v: no error", stores)
		}
	}
}
