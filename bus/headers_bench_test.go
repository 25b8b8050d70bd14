package bus_test

import (
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/bustest"
)

// BenchmarkFanOutHeaders is raw NATS fan-out with the kind carried in a NATS
// header, as issue 15's alternative envelope would: the cost of headers in
// nats.go beside BenchmarkFanOut/raw (no header) and /bus (yolk's envelope).
func BenchmarkFanOutHeaders(b *testing.B) {
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
		if m.Header.Get("Yolk-Kind") != "event" {
			b.Error("no kind")
		}
		if n++; n == b.N {
			got <- struct{}{}
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	s.SetPendingLimits(1<<20, 256<<20)
	sub.Flush()
	hdr := nats.Header{"Yolk-Kind": []string{"event"}}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := pub.PublishMsg(&nats.Msg{Subject: "yolk.app.ev.agent-1", Header: hdr, Data: data128}); err != nil {
			b.Fatal(err)
		}
	}
	waitBench(b, got)
}
