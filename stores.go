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
//
// A store of the fleet (Store.Fleet) is the cluster's, shared by every host:
// while this host's link to the cluster is down, its calls fail (with
// jetstream.ErrNoResponders, or their context's error), and opening it
// fails until the link is up.
func (p *Process) KeyValue(ctx context.Context, name string) (jetstream.KeyValue, error) {
	js, err := p.jetStream(name)
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
	js, err := p.jetStream(name)
	if err != nil {
		return nil, err
	}
	obj, err := js.ObjectStore(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("yolk: object store %q (is it in App.Stores with Objects set?): %w", name, err)
	}
	return obj, nil
}

// jetStream is the JetStream API of store name: the host's, or the
// cluster's for a store of the fleet.
func (p *Process) jetStream(name string) (jetstream.JetStream, error) {
	if p.fleetStore(name) {
		if !p.fleet.On() {
			return nil, fmt.Errorf("yolk: store %q is the fleet's: %w", name, ErrNoFleet)
		}
		return p.conn.FleetJetStream()
	}
	return p.conn.JetStream()
}
