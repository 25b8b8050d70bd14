package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// The raw NATS ceiling: an embedded nats-server in one process (the role
// nats-server), W subscriber processes (nats-sub) and one publisher process
// (nats-pub) with plain nats.go clients, doing what the yolk peers do with the
// same payloads and the same fan-out protocol, minus yolk's envelope, subject
// checks and permissions.

// Subjects of the raw NATS runs.
const (
	subjFan      = "bench.fan" // begin 'B', messages 'M', end 'E', on one subject so order holds
	subjProgress = "bench.progress"
	subjAck      = "bench.ack"
	subjRTT      = "bench.rtt"
)

// Pending limits of the raw subscribers: the same as yolk's bus.Conn.
const (
	subPendingMsgs  = 1 << 20
	subPendingBytes = 256 << 20
)

// runNATSServer serves an embedded nats-server on a free loopback port, prints
// "nats ready <url>" and runs until ctx ends.
func runNATSServer(ctx context.Context, stdout io.Writer) error {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		return err
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		return errors.New("nats-server: not ready within 10s")
	}
	fmt.Fprintln(stdout, "nats ready", s.ClientURL())
	<-ctx.Done()
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}

// runNATSSub is subscriber number index: it counts fan-out messages and, as
// number 0, answers round-trip requests. It prints "sub ready" once
// subscribed, and runs until ctx ends.
func runNATSSub(ctx context.Context, url string, index int, stdout io.Writer) error {
	nc, err := nats.Connect(url, nats.Name("sub"+strconv.Itoa(index)))
	if err != nil {
		return err
	}
	defer nc.Close()
	from := "sub" + strconv.Itoa(index)
	counter := &fanCounter{profile: "nats-sub", report: func(p fanProgress) {
		p.From = from
		b, _ := json.Marshal(p)
		_ = nc.Publish(subjProgress, b) // an error closes the connection: the run fails visibly
	}}
	sub, err := nc.Subscribe(subjFan, func(m *nats.Msg) {
		if len(m.Data) == 0 {
			return
		}
		switch m.Data[0] {
		case 'M':
			counter.msg()
		case 'B':
			var b fanBegin
			if json.Unmarshal(m.Data[1:], &b) == nil {
				counter.begin(b)
			}
		case 'E':
			run, _ := strconv.Atoi(string(m.Data[1:]))
			a := counter.ack(run)
			a.From = from
			b, _ := json.Marshal(a)
			_ = nc.Publish(subjAck, b)
		}
	})
	if err != nil {
		return err
	}
	if err := sub.SetPendingLimits(subPendingMsgs, subPendingBytes); err != nil {
		return err
	}
	if index == 0 {
		if _, err := nc.Subscribe(subjRTT, func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
			return err
		}
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "sub ready")
	<-ctx.Done()
	return nil
}

// runNATSPub measures the plan against workers subscribers and prints one
// JSON record per repetition, then a done record.
func runNATSPub(ctx context.Context, url string, plan peerPlan, stdout io.Writer) error {
	nc, err := nats.Connect(url, nats.Name("pub"))
	if err != nil {
		return err
	}
	defer nc.Close()
	t := newFanTracker()
	if _, err := nc.Subscribe(subjProgress, func(m *nats.Msg) {
		var p fanProgress
		if json.Unmarshal(m.Data, &p) == nil {
			t.onProgress(p.From, p)
		}
	}); err != nil {
		return err
	}
	if _, err := nc.Subscribe(subjAck, func(m *nats.Msg) {
		var a fanAck
		if json.Unmarshal(m.Data, &a) == nil {
			t.onAck(a.From, a)
		}
	}); err != nil {
		return err
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	emit := func(r record) { enc.Encode(r) }
	if err := runFanPlan(ctx, plan, t, emit, func(size int) fanSender {
		return &natsSender{nc: nc, payload: append([]byte{'M'}, bytes.Repeat([]byte("x"), max(0, size-1))...)}
	}); err != nil {
		return err
	}
	for rep := range plan.RTT.Reps {
		q, err := measureRTT(ctx, plan.RTT.Warm, plan.RTT.N, func(ctx context.Context) error {
			_, err := nc.RequestWithContext(ctx, subjRTT, rttPayload)
			return err
		})
		if err != nil {
			return fmt.Errorf("round trip, run %d: %w", rep+1, err)
		}
		enc.Encode(record{Test: "rtt", Variant: rttRequest, Rep: rep + 1, N: q.N, RTT: &q})
	}
	return enc.Encode(record{Test: "done"})
}

// natsSender publishes fan-out messages with plain nats.go.
type natsSender struct {
	nc      *nats.Conn
	payload []byte
}

func (s *natsSender) begin(b fanBegin) error {
	j, err := json.Marshal(b)
	if err != nil {
		return err
	}
	return s.nc.Publish(subjFan, append([]byte{'B'}, j...))
}
func (s *natsSender) system() string { return "raw NATS" }
func (s *natsSender) send() error    { return s.nc.Publish(subjFan, s.payload) }
func (s *natsSender) end(run int) error {
	return s.nc.Publish(subjFan, []byte("E"+strconv.Itoa(run)))
}
func (s *natsSender) flush(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second) // nats.go wants a deadline
	defer cancel()
	return s.nc.FlushWithContext(ctx)
}
