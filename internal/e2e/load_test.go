package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/bustest"
	"github.com/yolkgo/yolk/cache"
)

// TestLoadBurst sends 10,000 messages in a burst to every worker (5 bursts in the
// soak), under HTTP load: every worker receives every one of them, none is
// disconnected as a slow consumer, its memory stays bounded, and it still works
// afterwards.
//
// How: in external mode the test knows the workers' role secret, so it joins the
// real bus as a worker would (the same credential, a connection of its own) and
// publishes to the shared snapshot's bucket, where the agent publishes each new
// snapshot. That is the real path end to end: the master's embedded broker and
// its JetStream, the real worker binaries, their watch and install. (In fork
// mode only the master could: children get per-process credentials, and the
// control credential of master.json may only ask for status and reload.) Each
// message is the largest kind a worker gets all the time: the record of the
// data set the workers hold (100 keys, about 4 KB), published again, so each
// one goes through decoding and install, which finds the same data and takes
// only its revision: what a burst of republished snapshots looks like. A worker
// counts each record its watch delivers in yolk_bus_messages_total{event="refresh"};
// records superseded before delivery are skipped (the bucket keeps one per key),
// so the test asserts that every worker ends on the last revision.
func TestLoadBurst(t *testing.T) {
	checkGoroutines(t)
	const burst = 10_000
	bursts := pick(1, 5)
	x := newExternal(t)
	x.env = append(x.env, "YOLK_PULL_INTERVAL=0", "YOLK_FORCE_INTERVAL=0") // nothing but the burst on the bus
	master := x.startMaster(t)
	agent, _ := x.startMember(t, "agent", "agent")
	workers := map[string]*process{}
	var ids []string
	for i := range 3 {
		p, id := x.startMember(t, "worker", "worker-"+strconv.Itoa(i+1))
		workers[id] = p
		ids = append(ids, id)
	}
	v := versionNum(x.src.put(t, "burst", "1"))
	waitServed(t, x.http, "/data/burst", ids, v, freshBound)

	// The record: the data set the workers hold, inline.
	version, body := sourceData(t, x.src)
	snap, err := cache.NewSnapshot(version, time.Now(), body)
	if err != nil {
		t.Fatal(err)
	}
	record := append([]byte(`{"by":"push",`), snap.Encode()[1:]...)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	sender, err := bus.Dial(ctx, bus.Options{
		URL: envValue(x.env, "YOLK_BUS_URL"), User: string(bus.RoleWorker), Password: workerSecret,
		ID: "worker-burst-sender", Role: bus.RoleWorker, Logger: bustest.Logger(t),
	})
	if err != nil {
		t.Fatalf("join the bus with the workers' credential: %v", err)
	}
	defer sender.Close()
	js, err := sender.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.KeyValue(ctx, cache.Bucket); err != nil {
		t.Fatalf("open the bucket with the workers' credential: %v", err)
	}

	ld := startLoad(t, x.http+"/data/burst", loadClients, true)
	start := map[string]workerUsage{}
	for id, p := range workers {
		start[id] = workerUsage{rss: rss(t, p.cmd.Process.Pid)}
	}
	for b := range bursts {
		before := refreshCounts(t, x.http, ids)
		began := time.Now()
		// published asynchronously, as fast as the bus takes them
		acks := make([]jetstream.PubAckFuture, burst)
		for i := range acks {
			if i%1000 == 999 { // the client allows a few thousand unacknowledged
				<-js.PublishAsyncComplete()
			}
			if acks[i], err = js.PublishAsync("$KV."+cache.Bucket+".snapshot", record); err != nil {
				t.Fatalf("publish: %v", err)
			}
		}
		var last uint64
		for _, a := range acks {
			select {
			case ack := <-a.Ok():
				last = max(last, ack.Sequence)
			case err := <-a.Err():
				t.Fatalf("publish: %v", err)
			case <-time.After(30 * time.Second):
				t.Fatal("publish: no ack within 30s")
			}
		}
		sent := time.Since(began)
		var after map[string]float64
		eventually(t, 60*time.Second, fmt.Sprintf("every worker on revision %d", last), func() bool {
			for _, id := range ids {
				if rev, _ := metricValue(t, workerMetrics(t, x.http, id), `yolk_cache_revision`); uint64(rev) != last {
					return false
				}
			}
			return true
		})
		after = refreshCounts(t, x.http, ids)
		took := time.Since(began)
		for _, id := range ids {
			if got := after[id] - before[id]; got < 1 || got > burst {
				t.Errorf("burst %d: worker %s received %v records, want 1 to %d", b+1, id, got, burst)
			}
		}
		for id, p := range workers {
			now := rss(t, p.cmd.Process.Pid)
			limit := burstRSS(start[id].rss, burst*int64(len(record)))
			t.Logf("burst %d: worker %s RSS %d MiB (%d at the start, bound %d)", b+1, id, now>>20, start[id].rss>>20, limit>>20)
			if now > limit {
				t.Errorf("burst %d: worker %s RSS %d MiB, over the bound %d MiB", b+1, id, now>>20, limit>>20)
			}
		}
		t.Logf("burst %d: %d records of %d bytes published in %v, the last installed by %d workers %v after the first was sent (deliveries %v)",
			b+1, burst, len(record), sent.Round(time.Millisecond), len(ids), took.Round(time.Millisecond), after)
	}

	// The end state: every worker still connected (no reconnect, no member left),
	// and the bus still brings every change.
	v = versionNum(x.src.put(t, "burst", "2"))
	fresh := waitServed(t, x.http, "/data/burst", ids, v, freshBound)
	t.Logf("after the bursts a change reached every worker in %v", fresh.Round(time.Millisecond))
	ld.Stop()
	res := ld.results()
	(loadCheck{clients: loadClients}).check(t, res)
	lat := latencies(res)
	t.Logf("load during the bursts: %d requests, 0 failed; latency p50 %v p99 %v max %v", len(res),
		quantile(lat, .5).Round(time.Microsecond), quantile(lat, .99).Round(time.Microsecond), quantile(lat, 1).Round(time.Millisecond))
	for id, p := range workers {
		if n := p.logs.count("bus: disconnected"); n > 0 {
			t.Errorf("worker %s lost the bus %d times during the bursts:\n%s", id, n, p.logs)
		}
		checkLogs(t, "worker "+id, p.logs.String())
	}
	if n := master.logs.count("member left"); n > 0 {
		t.Errorf("the master saw %d members leave during the bursts:\n%s", n, master.logs)
	}
	checkLogs(t, "master", master.logs.String())
	checkLogs(t, "agent", agent.logs.String())
}

// burstRSS bounds the RSS of a worker that had before when it has received a
// burst of n bytes. Its receive queue may hold the whole burst at once (the bus
// client reads the socket faster than the handlers run: a -race worker handles
// about a thousand 3 KB refresh events a second), the heap may grow to twice what
// is live before a collection (GOGC=100), and the race detector's shadow memory
// comes on top of that: measured at most before + 3.9 n. 16 MiB for the rest.
// What matters as much: the bound is the same for every burst of the soak, so
// memory cannot creep from one to the next (measured: it does not).
func burstRSS(before, n int64) int64 { return before + 5*n + 16<<20 }

// sourceData returns the source's data set and its version.
func sourceData(t *testing.T, src *source) (string, []byte) {
	t.Helper()
	resp, err := http.Get(src.url + "/data")
	if err != nil {
		t.Fatalf("GET /data: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /data = %d, %v", resp.StatusCode, err)
	}
	etag := resp.Header.Get("ETag")
	return etag[1 : len(etag)-1], body
}

// refreshCounts returns the refresh events each worker of ids has received,
// from its metrics (through the shared port until each one has answered).
func refreshCounts(t *testing.T, base string, ids []string) map[string]float64 {
	t.Helper()
	counts := map[string]float64{}
	for _, id := range ids {
		m := workerMetrics(t, base, id)
		counts[id], _ = metricValue(t, m, `yolk_bus_messages_total{event="refresh"`)
	}
	return counts
}

// TestLoadChanges makes 1,000 changes at the source in 10 seconds (100 a second;
// 3,000 in 30 s in the soak) under HTTP load, with push, pull and force at their
// defaults: every worker ends on the last version, the agent reads the source at
// most once per change (not once per worker), no worker is disconnected as a slow
// consumer, and memory stays bounded.
func TestLoadChanges(t *testing.T) {
	n := pick(1000, 3000)
	const every = 10 * time.Millisecond
	r := startRig(t, rigOptions{workers: 3, every: every, limit: n, env: []string{"YOLK_PULL_INTERVAL=10s", "YOLK_FORCE_INTERVAL=10m"}})
	start := map[int]int64{}
	for _, pid := range r.status(t).pids("worker") {
		start[pid] = rss(t, pid)
	}
	before, made0 := r.m.src.stats(t), r.changes.count()
	r.changes.wait(t, time.Duration(n)*every*3)
	made := r.changes.span()
	last := r.changes.latest()
	fresh := r.waitFresh(t, last, freshBound)
	after := r.m.src.stats(t)
	reads, changed := after.Fetches-before.Fetches, r.changes.count()-made0
	t.Logf("%d changes in %v (%.0f/s): every worker on the last one %v after it; for the last %d the source was read %d times in full and %d times conditionally (%.2f full reads per change)",
		r.changes.count(), made.Round(time.Millisecond), float64(r.changes.count())/made.Seconds(), fresh.Round(time.Millisecond),
		changed, reads, after.Checks-before.Checks, float64(reads)/float64(changed))
	// At most one read per change for the whole service (egg: one per worker), and
	// a pull_refresh that finds a change (every 10 s) may read once more.
	if limit := changed + int(made/(10*time.Second)) + 1; reads > limit {
		t.Errorf("%d full reads of the source for %d changes with 3 workers, want at most %d: one per change (and pull)", reads, changed, limit)
	}
	if made > time.Duration(n)*every*3/2 {
		t.Errorf("%d changes took %v, want about %v: the test did not hold the rate", n, made, time.Duration(n)*every)
	}
	for pid, before := range start {
		now := rss(t, pid)
		t.Logf("worker %d RSS %d -> %d MiB", pid, before>>20, now>>20)
		if limit := rssLimit(before); now > limit {
			t.Errorf("worker %d RSS %d MiB after the changes, over the bound %d MiB", pid, now>>20, limit>>20)
		}
	}
	r.finish(t, loadCheck{}) // no failed request, no slow consumer in any log, no leak
}
