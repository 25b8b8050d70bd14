package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// A fleet is several hosts, each with its own bus, whose brokers join one NATS
// cluster as leaf nodes (broker.Config.Fleet). Everything above stays on its
// host; only the fleet's subjects cross to the cluster:
//
//	yolk-fleet.app.<event>.<id>@<host>    SendToFleet and GatherFleet: every worker of every host
//	yolk-fleet.inbox.<host>.<id>.>        the replies to a process of a fleet (its inbox)
//
// and the cluster's JetStream in its domain ($JS.<domain>.API.>, the entries of
// the fleet's stores).
const (
	prefixFleet      = "yolk-fleet."
	prefixFleetApp   = prefixFleet + "app."
	prefixFleetInbox = prefixFleet + "inbox."
)

// ErrNoFleet: a fleet verb was used on a Conn of a single host (Options.Host
// is empty).
var ErrNoFleet = errors.New("bus: not in a fleet (YOLK_CLUSTER_URL is empty)")

// FleetSubjects are the subjects that may cross a host's leaf link: the fleet
// verbs, the fleet's inboxes, and the JetStream API of the cluster's domain.
func FleetSubjects(domain string) []string {
	return []string{prefixFleet + ">", "$JS." + domain + ".API.>"}
}

// HostSubjects are the subjects that never leave a host: every verb of the
// messenger, the master's route and the inboxes of the host's bus.
func HostSubjects() []string { return []string{"yolk.>"} }

// FleetID is how process id of host signs what it sends to the fleet: the
// last token of its subjects, and [Message.From] at the receiver.
func FleetID(host, id string) string { return id + "@" + host }

// fleetInboxPrefix is the prefix of the reply subjects of process id of host
// in a fleet: replies from other hosts reach it across the leaf link.
func fleetInboxPrefix(host, id string) string { return prefixFleetInbox + host + "." + id }

// FleetPermissions are what a process of role with that id on host may
// publish and subscribe in a fleet, on top of [Permissions]: its fleet
// inbox, and for the agent and workers the fleet verbs, signed with its
// [FleetID]. The control role gets nothing more.
func FleetPermissions(role Role, host, id string) Perms {
	if ValidID(id) != nil || ValidID(host) != nil || ValidID(FleetID(host, id)) != nil {
		return Perms{}
	}
	switch role {
	case RoleAgent:
		return Perms{
			Publish:   []string{prefixFleetApp + "*." + FleetID(host, id)},
			Subscribe: []string{fleetInboxPrefix(host, id) + ".>"},
		}
	case RoleWorker:
		return Perms{
			Publish:   []string{prefixFleetApp + "*." + FleetID(host, id)},
			Subscribe: []string{fleetInboxPrefix(host, id) + ".>", prefixFleetApp + "*.*"},
		}
	case RoleMaster:
		// The master answers its host's processes, whose inboxes are the fleet's.
		return Perms{Publish: []string{prefixFleetInbox + host + ".>"}, Subscribe: []string{fleetInboxPrefix(host, id) + ".>"}}
	}
	return Perms{}
}

// Host returns the name of this process's host in a fleet, "" on a single host.
func (c *Conn) Host() string { return c.host }

// SendToFleet sends event to every worker of every host of the fleet, this
// host's too: [Conn.SendToApp] across hosts, fire-and-forget. Receivers see
// [Message.From] as id@host. Without a fleet it fails with [ErrNoFleet].
func (c *Conn) SendToFleet(event string, data any) error {
	if c.host == "" {
		return opErr("send to fleet", ErrNoFleet)
	}
	c.sent.inc(verbSendToFleet)
	return c.publishAs("send to fleet", prefixFleetApp, event, FleetID(c.host, c.id), wireJSON, data)
}

// GatherFleet is [Conn.Gather] across every host of the fleet: a request for
// event to every worker of every host, and their replies, until it has want
// of them or ctx ends. Without a fleet it fails with [ErrNoFleet].
func (c *Conn) GatherFleet(ctx context.Context, event string, data any, want int) ([]Message, error) {
	if c.host == "" {
		return nil, opErr("gather "+event+" from the fleet", ErrNoFleet)
	}
	c.sent.inc(verbGatherFleet)
	return c.gather(ctx, prefixFleetApp, FleetID(c.host, c.id), wireJSON, event, data, want)
}

// FleetJetStream returns the JetStream API of the cluster's domain, for the
// fleet's stores (broker.Config.Fleet.Stores). Without a fleet it fails with
// [ErrNoFleet]; while the host's leaf link is down its calls fail with
// jetstream.ErrNoResponders or their context's error, and the host's own
// stores keep working.
func (c *Conn) FleetJetStream() (jetstream.JetStream, error) {
	if c.host == "" {
		return nil, opErr("fleet jetstream", ErrNoFleet)
	}
	js, err := jetstream.NewWithDomain(c.nc, c.domain)
	if err != nil {
		return nil, opErr("fleet jetstream", fmt.Errorf("domain %q: %w", c.domain, err))
	}
	return js, nil
}
