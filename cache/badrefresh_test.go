package cache

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/bustest"
)

// TestReplicaKeepsItsSnapshotOnGarbage: refresh events whose snapshot is
// garbage, inline or from a holder that lies about it, never replace a
// worker's last good snapshot, never crash it (a holder that claims a
// terabyte used to make it allocate one), and each is logged; the worker
// then takes the next good refresh.
func TestReplicaKeepsItsSnapshotOnGarbage(t *testing.T) {
	c := newTestCluster(t, "v1", smallBody("v1"))
	c.startHub()
	log, rec := bustest.NewRecorder(t)
	cred := c.broker.Mint(bus.RoleWorker, "w1")
	conn, err := bus.Dial(t.Context(), bus.Options{
		URL: c.broker.ClientURL(), User: cred.User, Password: cred.Password, ID: "w1", Role: bus.RoleWorker, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	w := c.startReplicas(conn)[0]
	c.converge("v1", smallBody("v1"))
	before := w.store.Load()

	// w9 is a worker (any worker may announce what it read) that lies when asked.
	w9 := bustest.Dial(t, c.broker, bus.RoleWorker, "w9")
	var lie atomic.Pointer[chunkReply]
	if err := w9.On(EventSnapshot, func(context.Context, bus.Message) (any, error) { return *lie.Load(), nil }); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	good := string(mustSnapshot(t, "v9", time.Now(), `{"a":1}`).Encode())
	tests := []struct {
		name  string
		event string     // the refresh event's body
		lie   chunkReply // w9's answers, when the event names it as the holder
		err   string     // in the logged error
	}{
		{"inline snapshot not an object", `{"by":"push","version":"v9","fetchedAt":"` + now + `","holder":"a1","snapshot":"garbage"}`, chunkReply{}, "decode snapshot"},
		{"inline snapshot with a bad version", `{"by":"push","version":"v9","fetchedAt":"` + now + `","holder":"a1","snapshot":` +
			strings.Replace(good, `"version":"v9"`, `"version":"v 9"`, 1) + `}`, chunkReply{}, "invalid version"},
		{"inline snapshot without fetchedAt", `{"by":"push","version":"v9","fetchedAt":"` + now + `","holder":"a1","snapshot":{"version":"v9","items":{}}}`, chunkReply{}, "no fetchedAt"},
		{"inline snapshot with items that are not an object", `{"by":"push","version":"v9","fetchedAt":"` + now + `","holder":"a1","snapshot":{"version":"v9","fetchedAt":"` + now + `","items":[1]}}`, chunkReply{}, "JSON array"},
		{"unknown cause", `{"by":"shout","version":"v9","holder":"a1"}`, chunkReply{}, "unknown cause"},
		{"bad version", `{"by":"push","version":"v\n9","holder":"a1"}`, chunkReply{}, "invalid version"},
		{"version too long", `{"by":"push","version":"` + strings.Repeat("9", 300) + `","holder":"a1"}`, chunkReply{}, "longer than"},
		{"holder that cannot be", `{"by":"push","version":"v9","holder":"a.b"}`, chunkReply{}, "bad id"},
		{"no holder", `{"by":"push","version":"v9"}`, chunkReply{}, "bad id"},
		{"a holder that claims a terabyte", `{"by":"push","version":"v9","fetchedAt":"` + now + `","holder":"w9"}`,
			chunkReply{Version: "v9", FetchedAt: time.Now(), Total: 1 << 40, Data: []byte(good)}, "bad chunk"},
		{"a holder that claims a negative size", `{"by":"push","version":"v9","fetchedAt":"` + now + `","holder":"w9"}`,
			chunkReply{Version: "v9", FetchedAt: time.Now(), Total: -1, Data: []byte(good)}, "bad chunk"},
		{"a holder that sends more than it claims", `{"by":"push","version":"v9","fetchedAt":"` + now + `","holder":"w9"}`,
			chunkReply{Version: "v9", FetchedAt: time.Now(), Total: 3, Data: []byte(good)}, "bad chunk"},
		{"a holder that sends nothing", `{"by":"push","version":"v9","fetchedAt":"` + now + `","holder":"w9"}`,
			chunkReply{Version: "v9", FetchedAt: time.Now(), Total: 100}, "bad chunk"},
		{"a holder that sends garbage", `{"by":"push","version":"v9","fetchedAt":"` + now + `","holder":"w9"}`,
			chunkReply{Version: "v9", FetchedAt: time.Now(), Total: 7, Data: []byte("garbage")}, "decode snapshot"},
	}
	for _, tt := range tests {
		lie.Store(&tt.lie) // w9 is asked nothing before this event arrives
		if err := w9.SendToApp(EventRefresh, json.RawMessage(tt.event)); err != nil {
			t.Fatalf("%s: SendToApp: %v", tt.name, err)
		}
		r := rec.WaitFor(t, patience, "of the worker rejecting "+tt.name, func(r bustest.Record) bool {
			return r.Message == "bus: handler" && r.Attrs["event"] == EventRefresh && r.Attrs["from"] == "w9"
		})
		if r.Level < slog.LevelWarn || !strings.Contains(r.Attrs["err"], tt.err) {
			t.Errorf("%s: logged %s, want a warning with %q", tt.name, r, tt.err)
		}
		if got := w.store.Load(); got != before {
			t.Fatalf("%s: the worker holds %s (%p), want its last good snapshot %s (%p)", tt.name, versionOf(got), got, before.Version, before)
		}
	}
	for _, r := range rec.Records() {
		if strings.Contains(r.Message, "panicked") {
			t.Errorf("the worker logged %s", r)
		}
	}

	// and it still takes the next good refresh
	c.remote.set("v2", smallBody("v2"))
	c.hub.Changed("v2")
	c.converge("v2", smallBody("v2"))
}
