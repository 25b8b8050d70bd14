package broker

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/yolkgo/yolk/bus"
)

// defaultBindWait is how long a connection with an unbound credential waits for Bind.
const defaultBindWait = 5 * time.Second

// responseTTL is how long a process may take to answer a request it received.
const responseTTL = 10 * time.Minute

// auth is the credential table; it implements server.Authentication.
type auth struct {
	srv     *server.Server // set before the server starts
	log     *slog.Logger
	wait    time.Duration // for Bind
	mu      sync.Mutex
	cred    map[string]*credential // by user
	open    map[uint64]peer        // every admitted connection, by client id (see members.go)
	watched bool                   // a watch reports disconnects; set before the server starts
	stores  []string               // what the agent and workers may publish for the stores; set before the server starts
	fleet   *Fleet                 // the fleet this host joins, or nil; set before the server starts
	opening bool                   // the stores are being created: only the broker's own connection is admitted
	opened  chan struct{}          // closed when opening ends (storesMade)
	stop    chan struct{}          // closed by shutdown: wakes waiting connections
	once    sync.Once
}

type credential struct {
	role     bus.Role
	id       string        // "" until bound; unused for a role credential
	anyID    bool          // a role credential (AddRole): the id is the connection's name
	internal *bus.Perms    // the broker's own, to create the stores: what it may do (see mintInternal)
	digest   [32]byte      // sha256 of the password
	bound    chan struct{} // closed by bind
	revoked  chan struct{} // closed by revoke
	clients  map[uint64]struct{}
}

func newAuth(log *slog.Logger, wait time.Duration) *auth {
	return &auth{log: log, wait: wait, cred: make(map[string]*credential), open: make(map[uint64]peer),
		opened: make(chan struct{}), stop: make(chan struct{})}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

func newCredential(role bus.Role, password string) *credential {
	return &credential{
		role:    role,
		digest:  sha256.Sum256([]byte(password)),
		bound:   make(chan struct{}),
		revoked: make(chan struct{}),
		clients: make(map[uint64]struct{}),
	}
}

func (a *auth) mint(role bus.Role, id string) Credential {
	c := Credential{User: string(role) + "-" + randomHex(8), Password: randomHex(32)}
	if !role.Valid() {
		a.log.Error("broker: mint: unknown role, the credential will be refused", "role", string(role))
	}
	if id != "" {
		if err := bus.ValidID(id); err != nil {
			a.log.Error("broker: mint: the credential will be refused", "err", err)
		}
	}
	cr := newCredential(role, c.Password)
	if id != "" {
		cr.id = id
		close(cr.bound)
	}
	a.mu.Lock()
	a.cred[c.User] = cr
	a.mu.Unlock()
	return c
}

// internalID is the id of the broker's own connection.
const internalID = "broker"

// mintInternal creates the credential of the broker's own in-process
// connection, which manages JetStream with perms and does nothing else.
// Revoke it after use.
func (a *auth) mintInternal(perms bus.Perms) Credential {
	c := Credential{User: "broker-" + randomHex(8), Password: randomHex(32)}
	cr := newCredential(bus.RoleMaster, c.Password)
	cr.id, cr.internal = internalID, &perms
	close(cr.bound)
	a.mu.Lock()
	a.cred[c.User] = cr
	a.mu.Unlock()
	return c
}

func (a *auth) addRole(role bus.Role, password string) {
	cr := newCredential(role, password)
	cr.anyID = true
	a.mu.Lock()
	old := a.cred[string(role)]
	a.cred[string(role)] = cr
	if old != nil {
		cr.clients = old.clients // Revoke(role) still reaches them
	}
	a.mu.Unlock()
}

func (a *auth) bind(user, id string) error {
	if err := bus.ValidID(id); err != nil {
		return fmt.Errorf("broker: bind %s: %w", user, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	cr := a.cred[user]
	switch {
	case cr == nil:
		return fmt.Errorf("broker: bind %s: unknown credential", user)
	case cr.anyID:
		return fmt.Errorf("broker: bind %s: a role credential has no single id", user)
	case cr.id == id:
		return nil
	case cr.id != "":
		return fmt.Errorf("broker: bind %s to %s: already bound to %s", user, id, cr.id)
	}
	cr.id = id
	close(cr.bound)
	return nil
}

func (a *auth) revoke(user string) {
	a.mu.Lock()
	cr := a.cred[user]
	if cr == nil {
		a.mu.Unlock()
		return
	}
	delete(a.cred, user)
	close(cr.revoked)
	ids := make([]uint64, 0, len(cr.clients))
	for id := range cr.clients {
		ids = append(ids, id)
	}
	a.mu.Unlock()
	for _, id := range ids {
		_ = a.srv.DisconnectClientByID(id) // an error means it is gone already
	}
}

func (a *auth) shutdown() { a.once.Do(func() { close(a.stop) }) }

// Check admits a client connection: it implements server.Authentication.
// Verifying the credential and recording the connection happen under one
// lock, so a concurrent Revoke either refuses it or closes it.
func (a *auth) Check(c server.ClientAuthentication) bool {
	if c.Kind() != server.CLIENT {
		return false
	}
	o := c.GetOpts()
	user := o.Username
	a.mu.Lock()
	defer a.mu.Unlock()
	cr, err := a.lookup(user, o.Password)
	if err == nil && cr.internal == nil && a.opening {
		if !a.waitOpened() {
			return false // quietly: the stores took too long, or the broker stops
		}
		cr, err = a.lookup(user, o.Password) // the lock was let go: look again
	}
	if err == nil && !cr.anyID && cr.id == "" {
		cr, err = a.waitBound(user, cr)
	}
	id := ""
	if err == nil {
		id = cr.id
		if cr.anyID {
			id = o.Name
		}
		if !cr.role.Valid() {
			err = fmt.Errorf("unknown role %q", cr.role)
		} else if verr := bus.ValidID(id); verr != nil {
			err = verr
		} else if cr.anyID && !strings.HasPrefix(id, string(cr.role)+"-") {
			// else a worker could take the agent's id (or the master's pid) and
			// read its inbox and requests, and speak as it
			err = fmt.Errorf("id %q: the %s secret admits only ids that start with %s-", id, cr.role, cr.role)
		}
	}
	if err != nil {
		a.log.Warn("broker: refused connection", "user", user, "remote", addr(c), "err", err)
		return false
	}
	c.RegisterUser(&server.User{Username: user, Permissions: serverPermissions(a.permissions(cr, id))})
	a.track(cr, c.GetID())
	a.admit(c.GetID(), peer{role: cr.role, id: id})
	return true
}

// permissions are what cr may publish and subscribe as id: its role's, and
// for the agent and workers the entries of the stores.
func (a *auth) permissions(cr *credential, id string) bus.Perms {
	if cr.internal != nil {
		return *cr.internal
	}
	p := bus.Permissions(cr.role, id)
	child := len(p.Publish) > 0 && (cr.role == bus.RoleAgent || cr.role == bus.RoleWorker)
	if len(a.stores) > 0 && child {
		p.Publish = append(p.Publish, a.stores...)
	}
	if a.fleet != nil && (child || cr.role == bus.RoleMaster) {
		f := bus.FleetPermissions(cr.role, a.fleet.Host, id)
		p.Publish = append(p.Publish, f.Publish...)
		p.Subscribe = append(p.Subscribe, f.Subscribe...)
		// The fleet's stores, for the children and for the master's
		// `status` (which reads the leases).
		p.Publish = append(p.Publish, storePermissions(a.fleet.Stores, a.fleet.Domain)...)
	}
	return p
}

// lookup finds user's credential and checks its password in constant time.
// a.mu is held.
func (a *auth) lookup(user, password string) (*credential, error) {
	cr := a.cred[user]
	if cr == nil {
		return nil, errors.New("unknown user")
	}
	d := sha256.Sum256([]byte(password))
	if subtle.ConstantTimeCompare(d[:], cr.digest[:]) != 1 {
		return nil, errors.New("wrong password")
	}
	return cr, nil
}

// waitBound waits, without a.mu, until cr is bound, revoked, or a.wait has
// passed. a.mu is held on entry and on return.
// waitOpened waits, with a.mu released, until the stores are made: a child
// that connects while the master starts (external mode, where the platform
// starts the processes in any order) is admitted once they are, rather than
// refused, which its Dial would take as a bad credential. It reports whether
// they are. a.mu is held.
func (a *auth) waitOpened() bool {
	a.mu.Unlock()
	t := time.NewTimer(a.wait)
	select {
	case <-a.opened:
	case <-a.stop:
	case <-t.C:
	}
	t.Stop()
	a.mu.Lock()
	return !a.opening
}

// storesMade ends the stores' making: waiting connections go on.
func (a *auth) storesMade() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.opening {
		a.opening = false
		close(a.opened)
	}
}

func (a *auth) waitBound(user string, cr *credential) (*credential, error) {
	a.mu.Unlock()
	t := time.NewTimer(a.wait)
	select {
	case <-cr.bound:
	case <-cr.revoked:
	case <-a.stop:
	case <-t.C:
	}
	t.Stop()
	a.mu.Lock()
	switch {
	case a.cred[user] != cr:
		return nil, errors.New("credential revoked")
	case cr.id == "":
		return nil, fmt.Errorf("credential not bound to an id within %v", a.wait)
	}
	return cr, nil
}

// track records a connection of cr and forgets those that are gone. a.mu is held.
func (a *auth) track(cr *credential, cid uint64) {
	for id := range cr.clients {
		if a.srv.GetClient(id) == nil {
			delete(cr.clients, id)
		}
	}
	cr.clients[cid] = struct{}{}
}

func addr(c server.ClientAuthentication) string {
	if a := c.RemoteAddress(); a != nil {
		return a.String()
	}
	return "in-process"
}

// serverPermissions converts bus permissions to nats-server's. An empty list
// denies everything (nats-server reads a missing subscribe list as "allow all").
func serverPermissions(p bus.Perms) *server.Permissions {
	sp := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: append([]string{}, p.Publish...)},
		Subscribe: &server.SubjectPermission{Allow: append([]string{}, p.Subscribe...)},
	}
	if len(p.Publish) == 0 {
		sp.Publish = &server.SubjectPermission{Allow: []string{}, Deny: []string{">"}}
	}
	if len(p.Subscribe) == 0 {
		sp.Subscribe = &server.SubjectPermission{Deny: []string{">"}}
	}
	if p.AllowResponses {
		sp.Response = &server.ResponsePermission{MaxMsgs: 1, Expires: responseTTL}
	}
	return sp
}
