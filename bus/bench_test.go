package bus_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/bustest"
)

// data128 is a 128-byte JSON payload, the size the design measures with.
var data128 = json.RawMessage(`"` + strings.Repeat("x", 126) + `"`)

// BenchmarkFanOut compares SendToApp to one worker with the same traffic on
// raw NATS (same server, same payload, no envelope), both over loopback TCP.
func BenchmarkFanOut(b *testing.B) {
	b.Run("bus", func(b *testing.B) { benchFanOut(b, 1) })
	b.Run("bus-wire2", func(b *testing.B) { benchFanOut(b, 2) })
	b.Run("bus-wire3", func(b *testing.B) { benchFanOut(b, 3) }) // batches
	b.Run("raw", func(b *testing.B) { benchFanOutRaw(b, nil) })
	// The kind in a NATS header, the alternative to yolk's envelope that
	// issue 15 weighed (as micro's Nats-Service-Error): nats.go builds and
	// parses a header block and a map per message.
	b.Run("raw-header", func(b *testing.B) { benchFanOutRaw(b, nats.Header{"Yolk-Kind": []string{"event"}}) })
}

// benchFanOut is BenchmarkFanOut on the bus, the agent sending in wire
// version wire.
func benchFanOut(b *testing.B, wire int) {
	br := bustest.NewBroker(b)
	agent := bustest.Dial(b, br, bus.RoleAgent, "agent-1")
	if err := agent.SetWire(wire); err != nil {
		b.Fatal(err)
	}
	w := bustest.Dial(b, br, bus.RoleWorker, "w1")
	got := make(chan struct{}, 1)
	n := 0
	err := w.On("ev", func(context.Context, bus.Message) (any, error) {
		if n++; n == b.N {
			got <- struct{}{}
		}
		return nil, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	var data any = data128
	for range b.N {
		if err := agent.SendToApp("ev", data); err != nil {
			b.Fatal(err)
		}
	}
	waitBench(b, got)
	reportCPU(b, cpu)
}

// benchFanOutRaw is BenchmarkFanOut on raw NATS, each message with hdr if
// it is not nil.
func benchFanOutRaw(b *testing.B, hdr nats.Header) {
	br := bustest.NewBroker(b)
	pubCred, subCred := br.Mint(bus.RoleMaster, "p"), br.Mint(bus.RoleMaster, "s")
	pub, err := nats.Connect(br.ClientURL(), nats.UserInfo(pubCred.User, pubCred.Password))
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	sub, err := nats.Connect(br.ClientURL(), nats.UserInfo(subCred.User, subCred.Password))
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	got := make(chan struct{}, 1)
	n := 0
	s, err := sub.Subscribe("yolk.app.*.*", func(m *nats.Msg) {
		if hdr != nil && m.Header.Get("Yolk-Kind") != "event" {
			b.Error("a message without its kind")
		}
		if n++; n == b.N {
			got <- struct{}{}
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.SetPendingLimits(1<<20, 256<<20); err != nil {
		b.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		b.Fatal(err)
	}
	msg := &nats.Msg{Subject: "yolk.app.ev.agent-1", Header: hdr, Data: data128}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	for range b.N {
		if err := pub.PublishMsg(msg); err != nil {
			b.Fatal(err)
		}
	}
	waitBench(b, got)
	reportCPU(b, cpu)
}

// cpuTime is the CPU time (user and system) this process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds the CPU time per op since start, of every goroutine of the
// process (the broker, the sender and the receivers all run in it), to b's
// results. On a shared machine it varies less than the time per op, which
// also counts the waits for a core.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

func waitBench(b *testing.B, got chan struct{}) {
	b.Helper()
	select {
	case <-got:
	case <-time.After(time.Minute):
		b.Fatal("not every message arrived")
	}
}

// BenchmarkRoundTrip compares a worker's RequestAgent, answered by the agent's
// handler, with a raw NATS request to a plain responder on the same server:
// one op is one sequential round trip over loopback TCP.
func BenchmarkRoundTrip(b *testing.B) {
	b.Run("bus", func(b *testing.B) { benchRoundTrip(b, false, 1) })
	b.Run("bus-inline", func(b *testing.B) { benchRoundTrip(b, true, 1) })
	b.Run("bus-inline-wire3", func(b *testing.B) { benchRoundTrip(b, true, bus.WireVersion) })
	b.Run("raw", benchRoundTripRaw)
}

// benchRoundTrip is BenchmarkRoundTrip on the bus, with the agent's handler
// registered with On, or with OnInline, and the worker sending in wire
// version wire.
func benchRoundTrip(b *testing.B, inline bool, wire int) {
	br := bustest.NewBroker(b)
	agent := bustest.Dial(b, br, bus.RoleAgent, "agent-1")
	w := bustest.Dial(b, br, bus.RoleWorker, "w1")
	if err := w.SetWire(wire); err != nil {
		b.Fatal(err)
	}
	on := agent.On
	if inline {
		on = agent.OnInline
	}
	err := on("ping", func(_ context.Context, m bus.Message) (any, error) {
		return m.Data, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var data any = data128
	b.ReportAllocs()
	b.ResetTimer()
	lat := make([]time.Duration, b.N)
	cpu := cpuTime()
	for i := range b.N {
		t0 := time.Now()
		if _, err := w.RequestAgent(ctx, "ping", data); err != nil {
			b.Fatal(err)
		}
		lat[i] = time.Since(t0)
	}
	reportCPU(b, cpu)
	reportQuantiles(b, lat)
}

// benchRoundTripRaw is BenchmarkRoundTrip on raw NATS: a plain responder.
func benchRoundTripRaw(b *testing.B) {
	br := bustest.NewBroker(b)
	reqCred, respCred := br.Mint(bus.RoleMaster, "p"), br.Mint(bus.RoleMaster, "s")
	req, err := nats.Connect(br.ClientURL(), nats.UserInfo(reqCred.User, reqCred.Password),
		nats.CustomInboxPrefix(bus.InboxPrefix("p")))
	if err != nil {
		b.Fatal(err)
	}
	defer req.Close()
	resp, err := nats.Connect(br.ClientURL(), nats.UserInfo(respCred.User, respCred.Password))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Close()
	if _, err := resp.Subscribe("yolk.master.*.*", func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
		b.Fatal(err)
	}
	if err := resp.Flush(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	lat := make([]time.Duration, b.N)
	cpu := cpuTime()
	for i := range b.N {
		t0 := time.Now()
		if _, err := req.Request("yolk.master.ping.p", data128, 5*time.Second); err != nil {
			b.Fatal(err)
		}
		lat[i] = time.Since(t0)
	}
	reportCPU(b, cpu)
	reportQuantiles(b, lat)
}

// reportQuantiles adds the p50 and p99 of lat, in µs, to b's results.
func reportQuantiles(b *testing.B, lat []time.Duration) {
	b.StopTimer()
	slices.Sort(lat)
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))]) / 1e3 }
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
}
