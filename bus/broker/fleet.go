package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/yolkgo/yolk/bus"
)

// Fleet makes the broker's server a leaf node of a NATS cluster, which joins
// the hosts of a fleet. Nothing changes for the processes of the host: their
// subjects (bus.HostSubjects) and the host's stores never cross the leaf link,
// which the link's permissions enforce, not only the processes' own; the
// fleet's subjects (bus.FleetSubjects) do.
type Fleet struct {
	// URLs are the cluster's leaf node listeners (nats:// or tls://); the
	// server picks one and moves to another when it fails.
	URLs []*url.URL
	// User and Password, or Creds (a .creds file), authenticate the link.
	User, Password string
	Creds          string
	// CA is a PEM file of the certificates that sign the cluster's, for
	// tls:// URLs; empty means the system's.
	CA string
	// Domain is the cluster's JetStream domain. The cluster's servers must
	// have one: the host's server has JetStream too, and across a leaf link
	// the two are told apart by domain only.
	Domain string
	// Host is this host's name in the fleet, unique in it: a single subject
	// token (bus.ValidID).
	Host string
	// Stores are created on the cluster, on disk and replicated, once the link
	// is up (and again after it comes back, if the cluster lost them). The
	// agent and the workers may use their entries, as those of Config.Stores.
	Stores []Store
	// Replicas of each fleet store; 0 means 3, or 1 on a cluster of fewer
	// servers.
	Replicas int
}

// leafReconnect is how soon the server tries the cluster again after the
// link broke (nats-server's default is 1 s).
const leafReconnect = 250 * time.Millisecond

// maxHost is the longest host name: with a process's id, it makes one subject
// token of at most 64 bytes.
const maxHost = 32

// LocalDomain is the JetStream domain of a fleet host's own server.
func LocalDomain(host string) string { return "yolk-" + host }

// remote validates f and returns the leaf remote of the server's options.
func (f *Fleet) remote(local []Store) (*server.RemoteLeafOpts, error) {
	if len(f.URLs) == 0 {
		return nil, errors.New("fleet: no cluster URL")
	}
	if err := bus.ValidID(f.Host); err != nil || len(f.Host) > maxHost || strings.Contains(f.Host, "@") {
		// a host's name and a process's id make one subject token, id@host
		return nil, fmt.Errorf("fleet: host name %q: want 1 to %d letters, digits, '-' or '_'", f.Host, maxHost)
	}
	if f.Domain == "" || strings.ContainsAny(f.Domain, ".*> ") {
		return nil, fmt.Errorf("fleet: JetStream domain %q: want a single token", f.Domain)
	}
	if err := checkStores(append(append([]Store{}, local...), f.Stores...)); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	r := &server.RemoteLeafOpts{Credentials: f.Creds}
	for _, u := range f.URLs {
		u := *u
		switch u.Scheme {
		case "nats", "nats-leaf", "":
			u.Scheme = "nats"
		case "tls":
			r.TLS = true
		default:
			return nil, fmt.Errorf("fleet: cluster URL %s: want nats:// or tls://", u.Redacted())
		}
		if f.User != "" && u.User == nil {
			u.User = url.UserPassword(f.User, f.Password)
		}
		r.URLs = append(r.URLs, &u)
	}
	if r.TLS {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if f.CA != "" {
			pem, err := os.ReadFile(f.CA)
			if err != nil {
				return nil, fmt.Errorf("fleet: CA: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("fleet: CA %s: no certificate in it", f.CA)
			}
		}
		r.TLSConfig = cfg
	}
	// What stays on the host, both ways: the messenger, the master's route,
	// the inboxes of the host's bus, and the host's stores and their API.
	deny := append(bus.HostSubjects(), "$JS.API.>")
	for _, s := range local {
		stream, data := "KV_"+s.Name, "$KV."+s.Name+".>"
		if s.Objects {
			stream, data = "OBJ_"+s.Name, "$O."+s.Name+".>"
		}
		deny = append(deny, data, "$JS.ACK."+stream+".>", "$JS.FC."+stream+".>")
	}
	r.DenyImports, r.DenyExports = deny, deny
	return r, nil
}

// joinFleet configures opts to join f's cluster.
func joinFleet(opts *server.Options, f *Fleet, local []Store) error {
	r, err := f.remote(local)
	if err != nil {
		return err
	}
	opts.LeafNode.Remotes = []*server.RemoteLeafOpts{r}
	opts.LeafNode.ReconnectInterval = leafReconnect
	if opts.JetStream {
		opts.JetStreamDomain = LocalDomain(f.Host)
	}
	return nil
}

// FleetLink reports whether the host's leaf link to the cluster is up.
// Always false without Config.Fleet.
func (b *Broker) FleetLink() bool { return b.fleet != nil && b.srv.NumLeafNodes() > 0 }

// FleetStores reports whether the fleet's stores were found or made on the
// cluster since the link last came up.
func (b *Broker) FleetStores() bool { return b.fleetStores.Load() }

// fleetPoll is how often the broker looks at its leaf link, to make the
// fleet's stores once the link is up.
const fleetPoll = 500 * time.Millisecond

// keepFleetStores makes the fleet's stores each time the leaf link comes up,
// until stop is closed.
func (b *Broker) keepFleetStores(stop <-chan struct{}, f *Fleet) {
	t := time.NewTicker(fleetPoll)
	defer t.Stop()
	var logged time.Time
	for {
		up := b.srv.NumLeafNodes() > 0
		if !up {
			b.fleetStores.Store(false)
		} else if !b.fleetStores.Load() {
			if err := b.createFleetStores(stop, f); err != nil {
				if time.Since(logged) > 10*time.Second {
					b.log.Warn("broker: cannot make the fleet's stores on the cluster yet", "err", err)
					logged = time.Now()
				}
			} else {
				b.fleetStores.Store(true)
				b.log.Info("broker: the fleet's stores are on the cluster", "domain", f.Domain)
			}
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// createFleetStores makes the fleet's stores through the cluster's domain,
// with a credential of the broker's own for the cluster's JetStream API.
func (b *Broker) createFleetStores(stop <-chan struct{}, f *Fleet) error {
	inbox := strings.TrimSuffix(bus.FleetPermissions(bus.RoleMaster, f.Host, internalID).Subscribe[0], ".>")
	cred := b.auth.mintInternal(bus.Perms{Publish: []string{"$JS." + f.Domain + ".API.>"}, Subscribe: []string{inbox + ".>"}})
	defer b.auth.revoke(cred.User)
	nc, err := nats.Connect("", nats.InProcessServer(b.srv), nats.UserInfo(cred.User, cred.Password),
		nats.CustomInboxPrefix(inbox))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.NewWithDomain(nc, f.Domain)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for _, s := range f.Stores {
		if exists(ctx, js, s) {
			continue // as it is: another host made it, perhaps with other replicas
		}
		var err error
		switch f.Replicas {
		case 0:
			if err = createStore(ctx, js, s, jetstream.FileStorage, 3); err != nil {
				// A cluster of fewer than 3 servers cannot place 3 replicas.
				err = createStore(ctx, js, s, jetstream.FileStorage, 1)
			}
		default:
			err = createStore(ctx, js, s, jetstream.FileStorage, f.Replicas)
		}
		if err != nil {
			return fmt.Errorf("store %q: %w", s.Name, err)
		}
	}
	return nil
}

// exists reports whether store s is there.
func exists(ctx context.Context, js jetstream.JetStream, s Store) bool {
	var err error
	if s.Objects {
		_, err = js.ObjectStore(ctx, s.Name)
	} else {
		_, err = js.KeyValue(ctx, s.Name)
	}
	return err == nil
}
