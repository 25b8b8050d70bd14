package master

import (
	"fmt"
	"sync"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/internal/masterapi"
)

// wireGate decides the bus's wire version the processes of the service send
// (bus.Conn.SetWire): the newest that every one of them reads. Each child
// says in its ready report the newest it reads, and hears in the answer what
// to send. The first child's report fixes the version: an older child may
// lower it until then (an external member of an older yolk, say); after,
// a child that cannot read it is refused, for the others already send it.
// Children start from the binary as it is when they start, so that happens
// only when a reload or a restart runs an older yolk than the running
// processes: its new workers are refused, the reload fails, and the old
// workers keep serving.
type wireGate struct {
	conn *bus.Conn // the master's own: it sends the version once fixed

	mu      sync.Mutex
	version int  // what the children are told
	fixed   bool // some child was told version: it may be sending it
}

func newWireGate(conn *bus.Conn) *wireGate {
	return &wireGate{conn: conn, version: bus.WireVersion}
}

// admit reads a child's ready report and returns the wire version it is to
// send, or why it cannot be one of the service.
func (g *wireGate) admit(m bus.Message) (int, error) {
	var r masterapi.Ready
	if err := m.Decode(&r); err != nil {
		return 0, fmt.Errorf("ready from %s %s: %w", m.Role, m.From, err)
	}
	reads := max(r.Wire, 1) // a yolk before wire versions says nothing: it reads 1
	g.mu.Lock()
	defer g.mu.Unlock()
	if reads < g.version {
		if g.fixed {
			return 0, fmt.Errorf(masterapi.Refused+"%s %s reads the bus's wire version %d at most, and the service's processes send version %d: it runs an older yolk than they do; stop and start the service to run it",
				m.Role, m.From, reads, g.version)
		}
		g.version = reads
	}
	if !g.fixed {
		g.fixed = true
		if err := g.conn.SetWire(g.version); err != nil {
			return 0, err // cannot be: version is at most bus.WireVersion
		}
	}
	return g.version, nil
}
