package broker

import (
	"slices"
	"time"

	"github.com/yolkgo/yolk/bus"
)

// peer is who an admitted connection is: the role of its credential and its id.
type peer struct {
	role bus.Role
	id   string
}

// Connected reports whether a process with that id has an open connection,
// and its role as its credential says (not as its messages declare). With
// role credentials (AddRole) processes choose their ids: if connections of
// two roles claim the same id, Connected reports false.
func (b *Broker) Connected(id string) (bus.Role, bool) {
	a := b.auth
	a.mu.Lock()
	defer a.mu.Unlock()
	var role bus.Role
	for cid, p := range a.open {
		if p.id != id || a.srv.GetClient(cid) == nil {
			continue
		}
		if role != "" && role != p.role {
			return "", false
		}
		role = p.role
	}
	return role, role != ""
}

// watch calls gone for each process whose last open connection has closed,
// every poll, until stop is closed. nats-server has no close hook for a
// client, but it forgets a closed client at once (GetClient returns nil).
func (a *auth) watch(stop <-chan struct{}, poll time.Duration, gone func(bus.Role, string)) {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		for _, p := range a.closed() {
			select {
			case <-stop:
				return
			default:
			}
			gone(p.role, p.id)
		}
	}
}

// admit records an admitted connection. Without a watch (nobody asked to
// hear of disconnects) it also forgets the closed ones, so the table stays
// small. a.mu is held.
func (a *auth) admit(cid uint64, p peer) {
	if !a.watched {
		for id := range a.open {
			if a.srv.GetClient(id) == nil {
				delete(a.open, id)
			}
		}
	}
	a.open[cid] = p
}

// closed forgets the connections that have closed since the last call and
// returns the processes left with no open connection.
func (a *auth) closed() []peer {
	a.mu.Lock()
	defer a.mu.Unlock()
	var left []peer
	for cid, p := range a.open {
		if a.srv.GetClient(cid) == nil {
			delete(a.open, cid)
			left = append(left, p)
		}
	}
	var gone []peer
	for _, p := range left {
		still := false
		for _, q := range a.open {
			if q == p {
				still = true
				break
			}
		}
		if !still && !slices.Contains(gone, p) {
			gone = append(gone, p)
		}
	}
	return gone
}
