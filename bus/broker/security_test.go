package broker_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/broker"
	"github.com/yolkgo/yolk/bus/bustest"
)

// violationLogged waits for the broker's record of a refused publish or
// subscription of subject by the client called name, and checks that it
// does not show secret.
func violationLogged(t *testing.T, rec *bustest.Recorder, kind, subject, name, secret string) {
	t.Helper()
	r := rec.WaitFor(t, wait, kind+" Violation of "+subject+" by "+name, func(r bustest.Record) bool {
		return r.Level >= slog.LevelError && strings.Contains(r.Message, kind+" Violation") &&
			strings.Contains(r.Message, `"`+subject+`"`)
	})
	if !strings.Contains(r.Message, name) {
		t.Errorf("the broker logged %s, want it to name the client %s", r, name)
	}
	if strings.Contains(r.String(), secret) {
		t.Errorf("the broker logged %s, with the client's secret", r)
	}
}

// TestWorkerCannotActAsAnother: a worker's credential, used directly with
// nats.go, tries to publish as the agent, to forge the sender in the
// envelope, to subscribe to what is not its own and to answer a request
// meant for another. The broker refuses each (the client's error handler
// hears of it) and logs it with the client's name, never its secret; no
// target receives anything but the allowed message that follows.
func TestWorkerCannotActAsAnother(t *testing.T) {
	log, rec := bustest.NewRecorder(t)
	b, err := broker.Start(broker.Config{Port: -1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)

	agentLog, agentRec := bustest.NewRecorder(t)
	ac := b.Mint(bus.RoleAgent, "a1")
	agent, err := bus.Dial(t.Context(), bus.Options{
		URL: b.ClientURL(), User: ac.User, Password: ac.Password, ID: "a1", Role: bus.RoleAgent, Logger: agentLog,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	w2 := bustest.Dial(t, b, bus.RoleWorker, "w2")
	got := make(chan bus.Message, 100)
	record := func(_ context.Context, m bus.Message) (any, error) { got <- m; return "ok", nil }
	for _, c := range []*bus.Conn{agent, w2} {
		if err := c.On("ev", record); err != nil {
			t.Fatal(err)
		}
	}

	cred := b.Mint(bus.RoleWorker, "w1")
	w1, errs := raw(t, b, cred, "w1")
	envelope := func(kind, from string, role bus.Role) []byte {
		return []byte(`{"v":1,"kind":"` + kind + `","event":"ev","from":"` + from + `","role":"` + string(role) + `","data":"forged"}`)
	}

	t.Run("publish as the agent", func(t *testing.T) {
		for _, subject := range []string{
			"yolk.all.ev.a1", "yolk.app.ev.a1", "yolk.agent.ev.a1", "yolk.to.w2.ev.a1",
			"yolk.random.ev.a1", "yolk.master.ready.a1", "yolk.master.state.a1",
		} {
			if err := w1.Publish(subject, envelope("event", "a1", bus.RoleAgent)); err != nil {
				t.Fatal(err)
			}
			wantViolation(t, errs, subject)
			violationLogged(t, rec, "Publish", subject, "w1", cred.Password)
		}
	})

	t.Run("forge the sender in the envelope", func(t *testing.T) {
		// the subject is w1's own, which the broker allows; the agent's
		// Conn sees that the envelope lies and drops it
		const subject = "yolk.agent.ev.w1"
		if err := w1.PublishRequest(subject, bus.InboxPrefix("w1")+".x", envelope("send", "a1", bus.RoleAgent)); err != nil {
			t.Fatal(err)
		}
		agentRec.WaitFor(t, wait, "of the agent dropping the forged message", func(r bustest.Record) bool {
			return r.Level >= slog.LevelWarn && r.Message == "bus: drop message: envelope does not match its subject" &&
				r.Attrs["subject"] == subject && r.Attrs["from"] == "a1"
		})
	})

	t.Run("subscribe to what is not its own", func(t *testing.T) {
		var subs []*nats.Subscription
		for _, s := range []struct{ subject, queue string }{
			{">", ""}, {"yolk.>", ""}, {"yolk.*.*.*", ""},
			{"yolk.inbox.w2.>", ""}, {"yolk.inbox.a1.>", ""}, {"yolk.inbox.*.>", ""},
			{"yolk.to.w2.*.*", ""}, {"yolk.to.a1.*.*", ""}, {"yolk.to.>", ""},
			{"yolk.agent.*.*", ""}, {"yolk.agent.>", ""}, {"yolk.master.*.*", ""},
			{"yolk.random.*.*", ""}, {"yolk.random.*.*", "evil"},
		} {
			var sub *nats.Subscription
			var err error
			if s.queue != "" {
				sub, err = w1.QueueSubscribeSync(s.subject, s.queue)
			} else {
				sub, err = w1.SubscribeSync(s.subject)
			}
			if err != nil {
				t.Fatal(err)
			}
			subs = append(subs, sub)
			wantViolation(t, errs, s.subject)
			violationLogged(t, rec, "Subscription", s.subject, "w1", cred.Password)
		}
		// traffic to the agent and to w2, and their answers to each other
		ctx, cancel := context.WithTimeout(t.Context(), wait)
		defer cancel()
		if _, err := w2.RequestAgent(ctx, "ev", "to the agent"); err != nil {
			t.Fatal(err)
		}
		if _, err := agent.Request(ctx, "w2", "ev", "to w2"); err != nil {
			t.Fatal(err)
		}
		if err := w2.SendToAgent(ctx, "ev", "sent to the agent"); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			select {
			case <-got:
			case <-time.After(wait):
				t.Fatalf("%d of the 3 messages handled", i)
			}
		}
		// everything the broker delivered to w1 before this round trip has
		// arrived: none of its refused subscriptions got anything
		if err := w1.FlushTimeout(wait); err != nil {
			t.Fatal(err)
		}
		for _, sub := range subs {
			if n, _, _ := sub.Pending(); n != 0 {
				m, _ := sub.NextMsg(0)
				t.Errorf("refused subscription %q received %d messages, e.g. %s on %s", sub.Subject, n, m.Data, m.Subject)
			}
		}
	})

	t.Run("answer a request meant for another", func(t *testing.T) {
		// replies go to the asker's inbox, which only the one it asked may
		// publish to, once: w1 was asked nothing
		if err := agent.On("ask", func(_ context.Context, m bus.Message) (any, error) { return "from the agent", nil }); err != nil {
			t.Fatal(err)
		}
		w2inbox := bus.InboxPrefix("w2") + ".anything"
		for _, reply := range []string{w2inbox, bus.InboxPrefix("a1") + ".x"} {
			if err := w1.Publish(reply, []byte(`{"v":1,"kind":"reply","event":"ask","from":"a1","role":"agent","data":"forged"}`)); err != nil {
				t.Fatal(err)
			}
			wantViolation(t, errs, reply)
			violationLogged(t, rec, "Publish", reply, "w1", cred.Password)
		}
		ctx, cancel := context.WithTimeout(t.Context(), wait)
		defer cancel()
		m, err := w2.RequestAgent(ctx, "ask", nil)
		var s string
		if err != nil || m.Decode(&s) != nil || s != "from the agent" || m.From != "a1" {
			t.Errorf("RequestAgent(ask) = %+v (%q), %v; want the agent's own answer", m, s, err)
		}
	})

	// the allowed message that follows is the first that reaches the agent and w2
	if err := w1.Publish("yolk.app.ev.w1", envelope("event", "w1", bus.RoleWorker)); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		var s string
		if m.Decode(&s); m.From != "w1" || s != "forged" {
			t.Fatalf("first message handled after the refusals: %s from %s %q, want the allowed one from w1", m.Event, m.From, s)
		}
	case <-time.After(wait):
		t.Fatal("the allowed message never arrived")
	}
	if err := agent.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		m := <-got
		t.Errorf("%d more messages handled, e.g. %s from %s: %s", len(got)+1, m.Event, m.From, m.Data)
	}
}

// TestRefusedConnectionsAreLogged: a connection without a credential, with
// a wrong one or a revoked one is refused; the broker logs each with the user
// it claimed, and neither the log nor the error the client gets shows a secret.
func TestRefusedConnectionsAreLogged(t *testing.T) {
	log, rec := bustest.NewRecorder(t)
	b, err := broker.Start(broker.Config{Port: -1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	good := b.Mint(bus.RoleWorker, "w1")
	revoked := b.Mint(bus.RoleWorker, "w2")
	c, err := bus.Dial(t.Context(), bus.Options{
		URL: b.ClientURL(), User: revoked.User, Password: revoked.Password, ID: "w2", Role: bus.RoleWorker, Logger: bustest.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b.Revoke(revoked.User)
	select {
	case <-c.Done(): // it tried to reconnect with the revoked credential, and gave up
	case <-time.After(wait):
		t.Fatal("the Conn of a revoked credential is still open")
	}
	secrets := []string{good.Password, revoked.Password}
	tests := []struct {
		name, user, password string
	}{
		{"no credential", "", ""},
		{"no password", good.User, ""},
		{"wrong password", good.User, "not-" + good.Password},
		{"another's password", good.User, revoked.Password},
		{"revoked", revoked.User, revoked.Password},
		{"a role that has no secret", "agent", good.Password},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := []nats.Option{nats.Name("w1"), nats.NoReconnect()}
			if tt.user != "" {
				opts = append(opts, nats.UserInfo(tt.user, tt.password))
			}
			nc, err := nats.Connect(b.ClientURL(), opts...)
			if err == nil {
				nc.Close()
				t.Fatalf("connect with %s succeeded, want it refused", tt.name)
			}
			if !errors.Is(err, nats.ErrAuthorization) {
				t.Errorf("connect with %s = %v, want an authorization violation", tt.name, err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), wait)
			defer cancel()
			_, derr := bus.Dial(ctx, bus.Options{
				URL: b.ClientURL(), User: tt.user, Password: tt.password, ID: "w1", Role: bus.RoleWorker, Logger: bustest.Logger(t),
			})
			if derr == nil || !errors.Is(derr, nats.ErrAuthorization) {
				t.Errorf("bus.Dial with %s = %v, want an authorization violation", tt.name, derr)
			}
			for _, s := range secrets {
				if derr != nil && strings.Contains(derr.Error(), s) {
					t.Errorf("bus.Dial with %s = %q, which shows a secret", tt.name, derr)
				}
			}
			for range 2 { // one per attempt
				r := rec.WaitFor(t, wait, "of the refused connection of "+tt.name, func(r bustest.Record) bool {
					return r.Message == "broker: refused connection" && r.Attrs["user"] == tt.user
				})
				if r.Level < slog.LevelWarn || r.Attrs["remote"] == "" || r.Attrs["err"] == "" {
					t.Errorf("the broker logged %s, want a warning with the remote address and why", r)
				}
			}
		})
	}
	for _, r := range rec.Records() {
		for _, s := range secrets {
			if strings.Contains(r.String(), s) {
				t.Errorf("the broker logged %s, which shows a secret", r)
			}
		}
	}
}
