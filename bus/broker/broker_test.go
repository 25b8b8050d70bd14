package broker_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/broker"
	"github.com/yolkgo/yolk/bus/bustest"
)

// wait bounds every wait in these tests.
const wait = 10 * time.Second

// raw connects with nats.go directly, with a credential of b, so that a test
// can try what bus.Conn never does. Its asynchronous errors go to the
// returned channel.
func raw(t *testing.T, b *broker.Broker, cred broker.Credential, name string) (*nats.Conn, chan error) {
	t.Helper()
	errs := make(chan error, 100)
	nc, err := nats.Connect(b.ClientURL(),
		nats.UserInfo(cred.User, cred.Password),
		nats.Name(name),
		nats.CustomInboxPrefix(bus.InboxPrefix(name)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatalf("connect as %s: %v", name, err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

// wantViolation waits for a permissions violation that names subject.
func wantViolation(t *testing.T, errs chan error, subject string) {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case err := <-errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`) {
				return
			}
			t.Logf("other asynchronous error: %v", err)
		case <-deadline:
			t.Fatalf("no permissions violation for %q", subject)
		}
	}
}

func TestSubscribePermissions(t *testing.T) {
	b := bustest.NewBroker(t)
	tests := []struct {
		role           bus.Role
		id             string
		subject, queue string
		allowed        bool
	}{
		{bus.RoleWorker, "w1", ">", "", false},
		{bus.RoleWorker, "w1", "yolk.>", "", false},
		{bus.RoleWorker, "w1", "yolk.inbox.w2.>", "", false},
		{bus.RoleWorker, "w1", "yolk.inbox.w2.abc", "", false},
		{bus.RoleWorker, "w1", "yolk.inbox.*.>", "", false},
		{bus.RoleWorker, "w1", "yolk.to.w2.*.*", "", false},
		{bus.RoleWorker, "w1", "yolk.to.*.*.*", "", false},
		{bus.RoleWorker, "w1", "yolk.random.*.*", "", false},
		{bus.RoleWorker, "w1", "yolk.random.*.*", "other", false},
		{bus.RoleWorker, "w1", "yolk.agent.*.*", "", false},
		{bus.RoleWorker, "w1", "yolk.master.*.*", "", false},
		{bus.RoleWorker, "w1", "yolk.random.*.*", "app", true},
		{bus.RoleWorker, "w1", "yolk.inbox.w1.abc", "", true},
		{bus.RoleWorker, "w1", "yolk.to.w1.*.*", "", true},
		{bus.RoleWorker, "w1", "yolk.app.*.*", "", true},
		{bus.RoleWorker, "w1", "yolk.all.refresh.*", "", true},
		{bus.RoleAgent, "a1", "yolk.app.*.*", "", false},
		{bus.RoleAgent, "a1", "yolk.random.*.*", "app", false},
		{bus.RoleAgent, "a1", "yolk.to.w1.*.*", "", false},
		{bus.RoleAgent, "a1", "yolk.agent.*.*", "", true},
		{bus.RoleControl, bus.ControlID, "yolk.all.*.*", "", false},
		{bus.RoleControl, bus.ControlID, "yolk.inbox.w1.>", "", false},
		{bus.RoleControl, bus.ControlID, "yolk.inbox.ctl.>", "", true},
		{bus.RoleMaster, bus.MasterID, "yolk.>", "", true},
		{bus.RoleMaster, bus.MasterID, "other.>", "", false},
	}
	for _, tt := range tests {
		t.Run(string(tt.role)+" "+tt.subject+" "+tt.queue, func(t *testing.T) {
			nc, errs := raw(t, b, b.Mint(tt.role, tt.id), tt.id)
			var err error
			if tt.queue != "" {
				_, err = nc.QueueSubscribeSync(tt.subject, tt.queue)
			} else {
				_, err = nc.SubscribeSync(tt.subject)
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			if tt.allowed {
				if err := nc.LastError(); err != nil {
					t.Errorf("%s %s subscribing %q (queue %q): %v, want allowed", tt.role, tt.id, tt.subject, tt.queue, err)
				}
				return
			}
			wantViolation(t, errs, tt.subject)
		})
	}
}

// TestPublishPermissions: every refused publish is reported to the sender's
// error handler and never reaches the worker listening; the allowed one that
// follows does (one publisher, one route: the order is kept).
func TestPublishPermissions(t *testing.T) {
	b := bustest.NewBroker(t)
	w3 := bustest.Dial(t, b, bus.RoleWorker, "w3")
	agent := bustest.Dial(t, b, bus.RoleAgent, "a1")
	master := bustest.Dial(t, b, bus.RoleMaster, bus.MasterID)
	got := make(chan bus.Message, 100)
	record := func(_ context.Context, m bus.Message) (any, error) { got <- m; return "ok", nil }
	for _, c := range []*bus.Conn{w3, agent, master} {
		for _, ev := range []string{"ev", "reload", "status"} {
			if err := c.On(ev, record); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, ev := range []string{"reload", "status"} {
		if err := master.OnMaster(ev, record); err != nil {
			t.Fatal(err)
		}
	}
	envelope := func(event, from string, role bus.Role) []byte {
		return []byte(`{"v":1,"kind":"event","event":"` + event + `","from":"` + from + `","role":"` + string(role) + `","data":null}`)
	}
	tests := []struct {
		role     bus.Role
		id       string
		refused  []string
		allowed  string
		receiver string
	}{
		{
			role: bus.RoleWorker, id: "w1",
			refused: []string{"yolk.app.ev.w2", "yolk.all.ev.a1", "yolk.to.w3.ev.master", "yolk.agent.ev.w2",
				"yolk.master.reload.w1", "yolk.master.status.w1", "yolk.inbox.w3.x", "yolk.app.ev.w1.x", "other"},
			allowed: "yolk.app.ev.w1", receiver: "w3",
		},
		{
			role: bus.RoleAgent, id: "a2",
			refused: []string{"yolk.app.ev.a1", "yolk.random.ev.w1", "yolk.master.reload.a2"},
			allowed: "yolk.to.w3.ev.a2", receiver: "w3",
		},
		{
			role: bus.RoleControl, id: bus.ControlID,
			refused: []string{"yolk.app.ev.ctl", "yolk.all.ev.ctl", "yolk.master.ev.ctl", "yolk.master.reload.master"},
			allowed: "yolk.master.reload.ctl", receiver: bus.MasterID,
		},
	}
	for _, tt := range tests {
		t.Run(string(tt.role), func(t *testing.T) {
			nc, errs := raw(t, b, b.Mint(tt.role, tt.id), tt.id)
			for _, subject := range tt.refused {
				event, from := "ev", tt.id
				if parts := strings.Split(subject, "."); len(parts) >= 4 {
					event, from = parts[len(parts)-2], parts[len(parts)-1]
				}
				if err := nc.Publish(subject, envelope(event, from, tt.role)); err != nil {
					t.Fatal(err)
				}
				wantViolation(t, errs, subject)
			}
			parts := strings.Split(tt.allowed, ".")
			event := parts[len(parts)-2]
			var err error
			if strings.HasPrefix(tt.allowed, "yolk.app.") {
				err = nc.Publish(tt.allowed, envelope(event, tt.id, tt.role))
			} else { // a point-to-point route wants a send with a reply inbox
				msg := bytes.Replace(envelope(event, tt.id, tt.role), []byte(`"kind":"event"`), []byte(`"kind":"send"`), 1)
				_, err = nc.Request(tt.allowed, msg, wait)
			}
			if err != nil {
				t.Fatalf("%s publishing %s: %v", tt.id, tt.allowed, err)
			}
			select {
			case m := <-got:
				if m.From != tt.id || m.Event != event {
					t.Fatalf("first message handled is %s from %s, want the allowed %s from %s", m.Event, m.From, event, tt.id)
				}
			case <-time.After(wait):
				t.Fatalf("the allowed %s never arrived", tt.allowed)
			}
			if len(got) != 0 {
				t.Errorf("%d more messages handled, want none", len(got))
			}
		})
	}
}

// TestConnReportsViolation: a Conn whose publish is refused tells its
// OnError hook (after logging it), and the send fails at its deadline.
func TestConnReportsViolation(t *testing.T) {
	b := bustest.NewBroker(t)
	master := bustest.Dial(t, b, bus.RoleMaster, bus.MasterID)
	if err := master.OnMaster("reload", func(context.Context, bus.Message) (any, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	cred := b.Mint(bus.RoleWorker, "w1")
	errs := make(chan error, 10)
	w1, err := bus.Dial(t.Context(), bus.Options{
		URL: b.ClientURL(), User: cred.User, Password: cred.Password, ID: "w1", Role: bus.RoleWorker,
		Logger: bustest.Logger(t), OnError: func(err error) { errs <- err },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w1.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := w1.SendToMaster(ctx, "reload", nil); err == nil {
		t.Fatal("SendToMaster(reload) from a worker = nil, want an error")
	}
	wantViolation(t, errs, "yolk.master.reload.w1")
}

// TestReplyOnlyToOwnRequests: w2 receives a request from w3; w1 learns the
// reply subject but may not publish to it; w2 may, once.
func TestReplyOnlyToOwnRequests(t *testing.T) {
	b := bustest.NewBroker(t)
	w3 := bustest.Dial(t, b, bus.RoleWorker, "w3")
	w1, w1errs := raw(t, b, b.Mint(bus.RoleWorker, "w1"), "w1")
	w2, w2errs := raw(t, b, b.Mint(bus.RoleWorker, "w2"), "w2")
	inbox := make(chan string, 1)
	if _, err := w2.Subscribe("yolk.to.w2.*.*", func(m *nats.Msg) { inbox <- m.Reply }); err != nil {
		t.Fatal(err)
	}
	if err := w2.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	type result struct {
		m   bus.Message
		err error
	}
	done := make(chan result, 1)
	go func() {
		m, err := w3.Request(ctx, "w2", "ev", nil)
		done <- result{m, err}
	}()
	var reply string
	select {
	case reply = <-inbox:
	case <-ctx.Done():
		t.Fatal("w2 got no request")
	}
	if !strings.HasPrefix(reply, "yolk.inbox.w3.") {
		t.Fatalf("reply subject %q, want one under yolk.inbox.w3.", reply)
	}
	answer := func(from string) []byte {
		return []byte(`{"v":1,"kind":"reply","event":"ev","from":"` + from + `","role":"worker","data":"from ` + from + `"}`)
	}
	if err := w1.Publish(reply, answer("w1")); err != nil {
		t.Fatal(err)
	}
	wantViolation(t, w1errs, reply)
	if err := w2.Publish(reply, answer("w2")); err != nil {
		t.Fatal(err)
	}
	if err := w2.Publish(reply, answer("w2")); err != nil { // a second reply is refused
		t.Fatal(err)
	}
	wantViolation(t, w2errs, reply)
	r := <-done
	var s string
	if r.err != nil || r.m.Decode(&s) != nil || s != "from w2" || r.m.From != "w2" {
		t.Fatalf("Request(w2) = %+v (%q), %v, want the reply from w2", r.m, s, r.err)
	}
}

// logBuffer collects log lines to check that no secret is ever logged.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func TestAuthentication(t *testing.T) {
	logs := &logBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := broker.Start(broker.Config{Port: -1, Logger: logger, BindWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	const roleSecret = "the-worker-role-secret"
	if err := b.AddRole(bus.RoleWorker, roleSecret); err != nil {
		t.Fatal(err)
	}
	secrets := []string{roleSecret}
	mint := func(role bus.Role, id string) broker.Credential {
		c := b.Mint(role, id)
		secrets = append(secrets, c.Password)
		return c
	}
	good := mint(bus.RoleWorker, "w1")
	revoked := mint(bus.RoleWorker, "w2")
	b.Revoke(revoked.User)
	tests := []struct {
		name           string
		user, password string
		id             string
		ok             bool
	}{
		{"good", good.User, good.Password, "w1", true},
		{"bad password", good.User, good.Password + "x", "w1", false},
		{"empty password", good.User, "", "w1", false},
		{"unknown user", "worker-0000", good.Password, "w1", false},
		{"revoked", revoked.User, revoked.Password, "w2", false},
		{"never bound", mint(bus.RoleWorker, "").User, secrets[len(secrets)-1], "w3", false},
		{"unknown role", mint("root", "r1").User, secrets[len(secrets)-1], "r1", false},
		{"role secret", "worker", roleSecret, "worker-7", true},
		{"role secret, bad password", "worker", "nope", "worker-7", false},
		{"role secret, the id of another role", "worker", roleSecret, "agent-7", false},
		{"role secret, an id without the role", "worker", roleSecret, "w7", false},
		{"role without a secret", "agent", roleSecret, "a1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), wait)
			defer cancel()
			start := time.Now()
			c, err := bus.Dial(ctx, bus.Options{
				URL: b.ClientURL(), User: tt.user, Password: tt.password,
				ID: tt.id, Role: bus.RoleWorker, Logger: logger,
			})
			if tt.ok {
				if err != nil {
					t.Fatalf("Dial as %s = %v, want a connection", tt.name, err)
				}
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				c.Close()
				t.Fatalf("Dial as %s succeeded, want it refused", tt.name)
			}
			if !errors.Is(err, nats.ErrAuthorization) {
				t.Errorf("Dial as %s = %v, want an authorization violation", tt.name, err)
			}
			if elapsed := time.Since(start); elapsed > 2*time.Second {
				t.Errorf("Dial as %s took %v to be refused, want it refused at once", tt.name, elapsed)
			}
		})
	}
	out := logs.String()
	if !strings.Contains(out, "refused connection") {
		t.Errorf("refused connections were not logged:\n%s", out)
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("a secret %.6s... appears in the logs", s)
		}
	}
}

func TestRevokeClosesLiveConnection(t *testing.T) {
	b := bustest.NewBroker(t)
	other := bustest.Dial(t, b, bus.RoleWorker, "w2")
	cred := b.Mint(bus.RoleWorker, "w1")
	c, err := bus.Dial(t.Context(), bus.Options{
		URL: b.ClientURL(), User: cred.User, Password: cred.Password,
		ID: "w1", Role: bus.RoleWorker, Logger: bustest.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b.Revoke(cred.User)
	select {
	case <-c.Done():
	case <-time.After(wait):
		t.Fatal("the revoked Conn is still open")
	}
	select {
	case <-other.Done():
		t.Fatal("another credential's Conn was closed too")
	default:
	}
	if err := other.Flush(t.Context()); err != nil {
		t.Errorf("Flush of another Conn after a revoke = %v", err)
	}
	b.Revoke(cred.User) // revoking twice does nothing
	b.Revoke("nobody")
}

func TestBind(t *testing.T) {
	b := bustest.NewBroker(t)
	w1 := bustest.Dial(t, b, bus.RoleWorker, "w1")
	got := make(chan bus.Message, 1)
	if err := w1.On("ev", func(_ context.Context, m bus.Message) (any, error) { got <- m; return nil, nil }); err != nil {
		t.Fatal(err)
	}

	// A child connects as soon as it starts; the master binds its pid.
	cred := b.Mint(bus.RoleWorker, "")
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	type dialed struct {
		c   *bus.Conn
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		c, err := bus.Dial(ctx, bus.Options{
			URL: b.ClientURL(), User: cred.User, Password: cred.Password,
			ID: "4242", Role: bus.RoleWorker, Logger: bustest.Logger(t),
		})
		ch <- dialed{c, err}
	}()
	if err := b.Bind(cred.User, "4242"); err != nil {
		t.Fatalf("Bind: %v", err)
	}
	d := <-ch
	if d.err != nil {
		t.Fatalf("Dial with a credential bound meanwhile: %v", d.err)
	}
	defer d.c.Close()
	if err := d.c.SendToApp("ev", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.From != "4242" {
			t.Errorf("message from %q, want 4242", m.From)
		}
	case <-ctx.Done():
		t.Fatal("nothing received from the bound process")
	}

	role := "worker"
	if err := b.AddRole(bus.RoleWorker, "s"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, user, id string
		ok             bool
	}{
		{"same id again", cred.User, "4242", true},
		{"another id", cred.User, "4343", false},
		{"unknown user", "worker-ffff", "1", false},
		{"bad id", b.Mint(bus.RoleWorker, "").User, "a.b", false},
		{"role credential", role, "1", false},
	}
	for _, tt := range tests {
		err := b.Bind(tt.user, tt.id)
		if (err == nil) != tt.ok {
			t.Errorf("Bind(%s) = %v, want ok %v", tt.name, err, tt.ok)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "broker: ") {
			t.Errorf("Bind(%s) = %q, want the prefix broker:", tt.name, err)
		}
	}
}

func TestAddRole(t *testing.T) {
	b := bustest.NewBroker(t)
	if err := b.AddRole("root", "x"); err == nil {
		t.Error("AddRole(root) = nil, want an error")
	}
	if err := b.AddRole(bus.RoleAgent, ""); err == nil {
		t.Error("AddRole with an empty password = nil, want an error")
	}
	const secret = "worker-secret"
	if err := b.AddRole(bus.RoleWorker, secret); err != nil {
		t.Fatal(err)
	}
	w1 := bustest.Dial(t, b, bus.RoleWorker, "w1")
	got := make(chan bus.Message, 1)
	if err := w1.On("ev", func(_ context.Context, m bus.Message) (any, error) { got <- m; return nil, nil }); err != nil {
		t.Fatal(err)
	}
	// The id is the connection's name, and the permissions are pinned to it.
	nc, errs := raw(t, b, broker.Credential{User: "worker", Password: secret}, "worker-7")
	if err := nc.Publish("yolk.app.ev.worker-8", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	wantViolation(t, errs, "yolk.app.ev.worker-8")
	if err := nc.Publish("yolk.app.ev.worker-7", []byte(`{"v":1,"kind":"event","event":"ev","from":"worker-7","role":"worker"}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.From != "worker-7" {
			t.Errorf("first message from %q, want worker-7", m.From)
		}
	case <-time.After(wait):
		t.Fatal("nothing received from worker-7")
	}
}

// TestControl: the command line asks the master for its status.
func TestControl(t *testing.T) {
	b := bustest.NewBroker(t)
	master := bustest.Dial(t, b, bus.RoleMaster, bus.MasterID)
	err := master.OnMaster("status", func(_ context.Context, m bus.Message) (any, error) {
		return map[string]string{"asker": m.From}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctl := bustest.Dial(t, b, bus.RoleControl, bus.ControlID)
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	m, err := ctl.RequestMaster(ctx, "status", nil)
	if err != nil {
		t.Fatalf("RequestMaster(status) = %v", err)
	}
	var got map[string]string
	if err := m.Decode(&got); err != nil || got["asker"] != bus.ControlID || m.From != bus.MasterID {
		t.Errorf("RequestMaster(status) = %+v (%v, %v), want an answer from the master to ctl", m, got, err)
	}
}

// TestDialWithAnotherID: a credential minted for w1 cannot subscribe as w2,
// and Dial says so instead of returning a Conn that never receives.
func TestDialWithAnotherID(t *testing.T) {
	b := bustest.NewBroker(t)
	cred := b.Mint(bus.RoleWorker, "w1")
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	c, err := bus.Dial(ctx, bus.Options{
		URL: b.ClientURL(), User: cred.User, Password: cred.Password,
		ID: "w2", Role: bus.RoleWorker, Logger: bustest.Logger(t),
	})
	if err == nil {
		c.Close()
		t.Fatal("Dial as w2 with w1's credential succeeded, want an error")
	}
	if !errors.Is(err, nats.ErrPermissionViolation) || !strings.HasPrefix(err.Error(), "bus: subscribe") {
		t.Errorf("Dial as w2 with w1's credential = %v, want a bus: subscribe permissions violation", err)
	}
}
