package yolk

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// KeyValue opens the key-value bucket name, one of App.Stores. The bucket
// is the master's, shared by the agent and every worker; a watch on it
// (jetstream.KeyValue.Watch) delivers the last value of each key and then
// every update, and resumes after a reconnect to the bus from the last
// revision it delivered. A restarted master (external mode) starts with the
// bucket empty, its revisions from 1: watch again after a reconnect
// ([Process.OnReconnect]) to see it. The process may read, write and watch
// entries; it cannot create, purge or delete the bucket.
func (p *Process) KeyValue(ctx context.Context, name string) (jetstream.KeyValue, error) {
	js, err := p.conn.JetStream()
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("yolk: key-value bucket %q (is it in App.Stores?): %w", name, err)
	}
	return kv, nil
}

// ObjectStore opens the object store name, one of App.Stores with Objects
// set, as KeyValue opens a bucket.
func (p *Process) ObjectStore(ctx context.Context, name string) (jetstream.ObjectStore, error) {
	js, err := p.conn.JetStream()
	if err != nil {
		return nil, err
	}
	obj, err := js.ObjectStore(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("yolk: object store %q (is it in App.Stores with Objects set?): %w", name, err)
	}
	return obj, nil
}
