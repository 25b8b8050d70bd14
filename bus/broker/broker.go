// Package broker is the bus's server: an embedded nats-server listening only
// on a loopback TCP socket, which admits a process only with a credential it
// minted (or a role secret it was given) and lets it use only its role's
// subjects (bus.Permissions). It is not the messenger (see package bus), and
// only the master imports it.
package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/yolkgo/yolk/bus"
)

// Config configures [Start].
type Config struct {
	// Host to listen on; "" means 127.0.0.1.
	Host string
	// Port to listen on: -1 picks a free port, 0 means nats's default 4222.
	Port int
	// Logger receives the server's warnings and errors and refused
	// connections; nil means slog.Default(). Secrets are never logged.
	Logger *slog.Logger
	// MaxPayload is the largest message in bytes; 0 means nats's default 1 MiB.
	MaxPayload int32
	// BindWait is how long a connection presenting an unbound credential
	// waits for Bind; 0 means 5s.
	BindWait time.Duration
	// Roles are role secrets to admit from the first connection on, as
	// AddRole does after Start (external mode: a client reconnecting to a
	// restarted master must not meet a window without them). Start fails on
	// an unknown role or an empty secret, without naming the secret.
	Roles map[bus.Role]string
	// OnDisconnect, if set, is called when the last open connection of a
	// process (its role, from its credential, and its id) has closed: it
	// exited, was killed, or lost the bus. The broker notices within
	// DisconnectPoll. Calls come one at a time from one goroutine of the
	// broker's, never during or after Shutdown; it must not call Shutdown.
	OnDisconnect func(role bus.Role, id string)
	// Stores are the key-value buckets and object stores to keep in memory
	// for the agent and the workers (see Store). None leaves JetStream off.
	Stores []Store
	// Fleet, if set, joins a NATS cluster as a leaf node (see Fleet).
	Fleet *Fleet
}

// DisconnectPoll is how often the broker looks for closed connections when
// Config.OnDisconnect is set.
const DisconnectPoll = 100 * time.Millisecond

// Broker is a running bus server with its credential table. Its methods are
// safe for concurrent use.
type Broker struct {
	srv  *server.Server
	log  *slog.Logger
	auth *auth

	storeDir    string        // JetStream's directory, removed by Shutdown; "" without stores
	fleet       *Fleet        // nil on a single host
	fleetStores atomic.Bool   // the fleet's stores are on the cluster (see keepFleetStores)
	stopWatch   chan struct{} // closed by Shutdown: ends the disconnect watch
	watching    sync.WaitGroup
	once        sync.Once
}

// readyTimeout bounds the wait for the server to accept connections.
const readyTimeout = 10 * time.Second

// Start starts the server and returns when it accepts connections. It opens
// no other listener (no monitoring, cluster, gateway, leaf node, websocket or
// MQTT port) and installs no signal handler; with Config.Fleet it dials the
// cluster's leaf node listeners. Call Shutdown when done.
func Start(cfg Config) (*Broker, error) {
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.BindWait <= 0 {
		cfg.BindWait = defaultBindWait
	}
	a := newAuth(cfg.Logger, cfg.BindWait)
	for role, secret := range cfg.Roles {
		if !role.Valid() {
			return nil, fmt.Errorf("broker: start: unknown role %q", role)
		}
		if secret == "" {
			return nil, fmt.Errorf("broker: start: empty secret for role %s", role)
		}
		a.addRole(role, secret)
	}
	a.watched = cfg.OnDisconnect != nil
	if err := checkStores(cfg.Stores); err != nil {
		return nil, fmt.Errorf("broker: start: %w", err)
	}
	a.stores = storePermissions(cfg.Stores, "")
	a.opening = len(cfg.Stores) > 0
	opts := &server.Options{
		Host:                       cfg.Host,
		Port:                       cfg.Port,
		NoSigs:                     true,
		NoSystemAccount:            true,
		MaxPayload:                 cfg.MaxPayload,
		CustomClientAuthentication: a,
	}
	var storeDir string
	if len(cfg.Stores) > 0 {
		dir, err := startJetStream(opts)
		if err != nil {
			return nil, err
		}
		storeDir = dir
	}
	if cfg.Fleet != nil {
		if err := joinFleet(opts, cfg.Fleet, cfg.Stores); err != nil {
			os.RemoveAll(storeDir)
			return nil, fmt.Errorf("broker: start: %w", err)
		}
		a.fleet = cfg.Fleet
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		os.RemoveAll(storeDir)
		return nil, fmt.Errorf("broker: start: %w", err)
	}
	srv.SetLoggerV2(serverLog{cfg.Logger}, false, false, false)
	a.srv = srv
	srv.Start()
	if !srv.ReadyForConnections(readyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		os.RemoveAll(storeDir)
		return nil, fmt.Errorf("broker: start: not ready for connections on %s:%d after %v",
			cfg.Host, cfg.Port, readyTimeout)
	}
	b := &Broker{srv: srv, log: cfg.Logger, auth: a, storeDir: storeDir, fleet: cfg.Fleet, stopWatch: make(chan struct{})}
	if len(cfg.Stores) > 0 {
		if err := b.createStores(cfg.Stores); err != nil {
			b.Shutdown()
			return nil, err
		}
		a.storesMade()
	}
	if cfg.Fleet != nil && len(cfg.Fleet.Stores) > 0 {
		b.watching.Go(func() { b.keepFleetStores(b.stopWatch, cfg.Fleet) })
	}
	if cfg.OnDisconnect != nil {
		b.watching.Go(func() { a.watch(b.stopWatch, DisconnectPoll, cfg.OnDisconnect) })
	}
	return b, nil
}

// ClientURL returns the URL clients dial, e.g. nats://127.0.0.1:34567.
func (b *Broker) ClientURL() string { return b.srv.ClientURL() }

// InProcess returns the provider of in-process connections, for the
// master's own Conn (bus.Options.InProcess). Those connections authenticate
// like any other.
func (b *Broker) InProcess() nats.InProcessConnProvider { return b.srv }

// Shutdown closes every connection, stops the server and waits for it.
// Config.OnDisconnect is not called for the connections it closes.
func (b *Broker) Shutdown() {
	b.once.Do(func() { close(b.stopWatch) })
	b.watching.Wait()
	b.auth.shutdown()
	b.srv.Shutdown()
	b.srv.WaitForShutdown()
	if b.storeDir != "" {
		os.RemoveAll(b.storeDir)
	}
}

// Credential is what a process presents to connect (bus.Options.User and
// Password). The password is a secret: never log it.
type Credential struct {
	User, Password string
}

// Mint creates a credential for one process of role with that id (one
// credential, one identity). If id is "", bind it later with Bind: a
// connection presenting an unbound credential waits for Bind (up to
// Config.BindWait, 5s by default), so a child may connect as soon as it is
// started, before the master has bound its pid. Revoke the credential when the process is gone. A credential with an
// unknown role or a bad id is never admitted (and Mint logs why).
func (b *Broker) Mint(role bus.Role, id string) Credential {
	return b.auth.mint(role, id)
}

// Bind sets the id of a credential minted without one. Binding it again to
// the same id is a no-op; to another id, an error.
func (b *Broker) Bind(user, id string) error { return b.auth.bind(user, id) }

// Revoke forgets the credential and closes every connection that used it
// (its clients then fail to reconnect and close for good). Revoking an
// unknown user does nothing.
func (b *Broker) Revoke(user string) { b.auth.revoke(user) }

// AddRole admits every process of role that presents user string(role) and
// that password, under the id it declares as its connection name (bus.Dial
// declares Options.ID), which must start with string(role)+"-": a process
// of one role can never take the id of another role's process, nor the
// master's. This is for external mode, where each role has one secret from
// the platform; processes of one role trust each other with their ids.
// Adding a role again replaces its password; Revoke(string(role)) removes it.
func (b *Broker) AddRole(role bus.Role, password string) error {
	if !role.Valid() {
		return fmt.Errorf("broker: add role: unknown role %q", role)
	}
	if password == "" {
		return errors.New("broker: add role " + string(role) + ": empty password")
	}
	b.auth.addRole(role, password)
	return nil
}

// serverLog passes nats-server's warnings and errors to slog; notices, debug
// and trace lines are dropped.
type serverLog struct{ l *slog.Logger }

func (s serverLog) Noticef(string, ...any) {}
func (s serverLog) Debugf(string, ...any)  {}
func (s serverLog) Tracef(string, ...any)  {}

func (s serverLog) Warnf(format string, v ...any) {
	s.l.Warn("broker: " + fmt.Sprintf(format, v...))
}

func (s serverLog) Errorf(format string, v ...any) {
	s.l.Error("broker: " + fmt.Sprintf(format, v...))
}

func (s serverLog) Fatalf(format string, v ...any) {
	s.l.Error("broker: fatal: " + fmt.Sprintf(format, v...))
}
