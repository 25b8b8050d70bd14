package broker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/yolkgo/yolk/bus"
)

// Store is a key-value bucket or an object store that the broker keeps in
// memory (JetStream on the bus) for the agent and the workers. They may read
// and write its entries and nothing else of JetStream: creating, changing or
// deleting a store is the broker's alone, so a child cannot drop the data
// every other process relies on.
type Store struct {
	// Name is the bucket's name: letters, digits, '-' and '_'.
	Name string
	// Objects makes it an object store (large values, chunked, checked by a
	// SHA-256 digest); else it is a key-value bucket.
	Objects bool
	// TTL, if set, expires entries that long after their last write.
	TTL time.Duration
}

// maxJetStreamMemory bounds what the stores may hold together.
const maxJetStreamMemory = 4 << 30

// startJetStream turns JetStream on in opts, in memory. JetStream insists on
// a writable directory even when nothing is stored on disk: a private one,
// removed at Shutdown.
func startJetStream(opts *server.Options) (dir string, err error) {
	dir, err = os.MkdirTemp("", "yolk-bus-")
	if err != nil {
		return "", fmt.Errorf("broker: start: directory for the stores: %w", err)
	}
	opts.JetStream = true
	opts.StoreDir = dir
	opts.JetStreamMaxMemory = maxJetStreamMemory
	opts.JetStreamMaxStore = 0
	return dir, nil
}

// createStores creates the configured stores through an in-process
// connection with a credential of its own, revoked at the end.
func (b *Broker) createStores(stores []Store) error {
	cred := b.auth.mintInternal(bus.Perms{Publish: []string{"$JS.API.>"}, Subscribe: []string{bus.InboxPrefix(internalID) + ".>"}})
	defer b.auth.revoke(cred.User)
	nc, err := nats.Connect("", nats.InProcessServer(b.srv), nats.UserInfo(cred.User, cred.Password),
		nats.CustomInboxPrefix(bus.InboxPrefix(internalID)))
	if err != nil {
		return fmt.Errorf("broker: create stores: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("broker: create stores: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for _, s := range stores {
		if err := createStore(ctx, js, s, jetstream.MemoryStorage, 1); err != nil {
			return fmt.Errorf("broker: create store %q: %w", s.Name, err)
		}
	}
	return nil
}

// createStore creates s, or updates it to this configuration.
func createStore(ctx context.Context, js jetstream.JetStream, s Store, storage jetstream.StorageType, replicas int) error {
	var err error
	if s.Objects {
		_, err = js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket: s.Name, Storage: storage, TTL: s.TTL, Replicas: replicas,
		})
	} else {
		_, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: s.Name, Storage: storage, TTL: s.TTL, History: 1, Replicas: replicas,
		})
	}
	return err
}

// checkStores checks the names of the configured stores before the server
// starts.
func checkStores(stores []Store) error {
	seen := map[string]bool{}
	for _, s := range stores {
		if s.Name == "" {
			return errors.New("store with an empty name")
		}
		for _, c := range s.Name {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("store name %q: want letters, digits, '-' and '_'", s.Name)
			}
		}
		if seen[s.Name] {
			return fmt.Errorf("store %q configured twice", s.Name)
		}
		seen[s.Name] = true
	}
	return nil
}

// storePermissions are the subjects a child needs for the entries of the
// stores, through the JetStream API of domain ("" for the host's own): reads (direct and message gets, watches and object reads through
// ordered consumers), writes (puts, compare-and-set updates, object chunks)
// and the purge that replaces or deletes an object. Stream management
// (create, update, delete) is not among them.
func storePermissions(stores []Store, domain string) []string {
	api := "$JS.API."
	if domain != "" {
		api = "$JS." + domain + ".API."
	}
	var out []string
	for _, s := range stores {
		stream, data := "KV_"+s.Name, "$KV."+s.Name+".>"
		if s.Objects {
			stream, data = "OBJ_"+s.Name, "$O."+s.Name+".>"
		}
		if domain != "" {
			// nats.go writes an entry of another domain's store through
			// that domain's API prefix, which maps it to the store's subject
			out = append(out, api+data)
		}
		out = append(out,
			data,
			api+"STREAM.INFO."+stream,
			api+"STREAM.MSG.GET."+stream,
			api+"DIRECT.GET."+stream,
			api+"DIRECT.GET."+stream+".>",
			api+"CONSUMER.CREATE."+stream,
			api+"CONSUMER.CREATE."+stream+".>",
			api+"CONSUMER.INFO."+stream+".*",
			api+"CONSUMER.DELETE."+stream+".*",
			"$JS.FC."+stream+".>",
			"$JS.ACK."+stream+".>",
		)
		if s.Objects {
			out = append(out, api+"STREAM.PURGE."+stream)
		}
	}
	return out
}
