package master

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/broker"
)

// leasesBucket is the fleet's bucket of leases (yolk.LeasesBucket), which the
// master makes on the cluster with YOLK_LEASE_TTL as its TTL.
const leasesBucket = "yolk-leases"

// fleet returns the broker's fleet settings, nil on a single host.
func (c *config) fleet() (*broker.Fleet, error) {
	if !c.Fleet.On() {
		return nil, nil
	}
	urls, err := c.Fleet.URLs()
	if err != nil {
		return nil, err
	}
	stores := append([]broker.Store{{Name: leasesBucket, TTL: c.LeaseTTL}}, c.fleetStores...)
	return &broker.Fleet{
		URLs: urls, User: c.ClusterUser, Password: c.ClusterPassword, Creds: c.ClusterCreds, CA: c.ClusterCA,
		Domain: c.Domain, Host: c.Host, Stores: stores,
	}, nil
}

// fleetStatus is the fleet's part of `master status`.
type fleetStatus struct {
	Host   string        `json:"host"`
	Link   bool          `json:"link"`   // the leaf link to the cluster is up
	Stores bool          `json:"stores"` // the fleet's stores are there
	Leases []leaseStatus `json:"leases,omitempty"`
	Err    string        `json:"error,omitempty"` // why the leases could not be read
}

// leaseStatus is who holds one lease.
type leaseStatus struct {
	Name   string `json:"name"`
	Holder string `json:"holder"` // id@host, "" when it was given up
	Fence  uint64 `json:"fence"`
}

// fleetState reads the fleet's state: the link, and the holders of the
// leases from the cluster.
func fleetState(ctx context.Context, cfg config, b *broker.Broker, conn *bus.Conn) *fleetStatus {
	if !cfg.Fleet.On() {
		return nil
	}
	fs := &fleetStatus{Host: cfg.Host, Link: b.FleetLink(), Stores: b.FleetStores()}
	if !fs.Link {
		fs.Err = "the cluster cannot be reached: each host reads the remote itself"
		return fs
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	leases, err := readLeases(ctx, conn)
	if err != nil {
		fs.Err = "leases: " + err.Error()
	}
	fs.Leases = leases
	return fs
}

func readLeases(ctx context.Context, conn *bus.Conn) ([]leaseStatus, error) {
	js, err := conn.FleetJetStream()
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, leasesBucket)
	if err != nil {
		return nil, err
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var out []leaseStatus
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired meanwhile
		}
		if err != nil {
			return out, err
		}
		var r struct {
			Holder string `json:"holder"`
		}
		_ = json.Unmarshal(e.Value(), &r) // shown as held by nobody
		out = append(out, leaseStatus{Name: k, Holder: r.Holder, Fence: e.Revision()})
	}
	return out, nil
}

// watchLink logs each change of the leaf link until ctx ends.
func watchLink(ctx context.Context, b *broker.Broker, log *slog.Logger) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	up := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if now := b.FleetLink(); now != up {
			up = now
			if up {
				log.Info("fleet: linked to the cluster")
			} else {
				log.Warn("fleet: the link to the cluster is down; this host carries on alone")
			}
		}
	}
}
