package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// scaleFanout measures fan-out of 128 B to w workers: sc.fanRounds rounds of
// yolk, raw NATS and the egg baseline in turn, each figure the median round.
// The baseline's first run also makes its pushes, which give its fetches per
// change, when w is one of the fetch section's worker counts.
// scaleMaxBytes is the largest data set the scale section lets the agent
// read (YOLK_SOURCE_MAX_BYTES; the default is cache.DefaultMaxBytes, 32 MiB):
// room for the 50 MB point.
const (
	scaleMaxBytes    = 64 << 20
	scaleMaxBytesEnv = "YOLK_SOURCE_MAX_BYTES=64MiB"
)

func (h *harness) scaleFanout(ctx context.Context, sc scaleConfig, w int) ([]FanoutResult, *ConvergeResult) {
	n := fanN(w)
	plan := peerPlan{Workers: w, Fanout: []fanSpec{{Size: 128, N: n, Reps: 1, Warm: n / 4}}}
	var yolkRecs, natsRecs []record
	var eggRates, eggPer []float64
	var push *ConvergeResult
	var yolkErr, natsErr, eggErr error
	for round := 1; round <= sc.fanRounds; round++ {
		if yolkErr == nil {
			h.logf("fan-out, %d workers, round %d of %d: yolk", w, round, sc.fanRounds)
			var recs []record
			recs, yolkErr = h.yolkPeers(ctx, plan)
			yolkRecs = append(yolkRecs, recs...)
		}
		if natsErr == nil {
			h.logf("fan-out, %d workers, round %d of %d: raw NATS", w, round, sc.fanRounds)
			var recs []record
			recs, natsErr = h.rawNATS(ctx, plan)
			natsRecs = append(natsRecs, recs...)
		}
		if eggErr == nil {
			args := baselineArgs{Workers: w, FanN: n, RTTN: 0, Reps: 1}
			if round == 1 && slices.Contains(sc.fetchWorkers, w) {
				args.PushN = sc.fetchChanges
			}
			h.logf("fan-out, %d workers, round %d of %d: egg baseline (node baseline.js %s)", w, round, sc.fanRounds, strings.Join(args.list(), " "))
			var b baselineResults
			if b, eggErr = h.runBaseline(ctx, args, 0); eggErr == nil { // one repetition, none dropped
				for _, f := range b.Fanout {
					eggRates, eggPer = append(eggRates, f.TotalMsgsPerSec), append(eggPer, f.PerWorkerMsgsPerSec)
				}
				if len(b.Converge) > 0 && b.Converge[0].Ms.N > 0 {
					push = &b.Converge[0]
				}
			}
		}
	}
	var out []FanoutResult
	for _, s := range []struct {
		system string
		recs   []record
		err    error
	}{{sysYolk, yolkRecs, yolkErr}, {sysNATS, natsRecs, natsErr}} {
		if s.err != nil {
			h.fail("fan-out: %s, %d workers: %v", s.system, w, s.err)
			continue
		}
		fo, _ := aggregate(s.system, w, s.recs)
		out = append(out, fo...)
	}
	if eggErr != nil {
		h.fail("fan-out: egg baseline, %d workers: %v", w, eggErr)
	} else if len(eggRates) > 0 {
		out = append(out, FanoutResult{System: sysEgg, Workers: w, Size: 128, N: n, Reps: len(eggRates),
			TotalMsgsPerSec: median(eggRates), PerWorkerMsgsPerSec: median(eggPer)})
	}
	return out, push
}

// scaleFetches runs yolk with w workers on the source's default data set
// (100 small keys, as the convergence section of make bench) and counts the
// source's fetches over sc.fetchChanges changes.
func (h *harness) scaleFetches(ctx context.Context, sc scaleConfig, w int) (FetchPoint, error) {
	h.logf("fetches, %d workers: yolk (%d changes)", w, sc.fetchChanges)
	fp := FetchPoint{Workers: w, Yolk: ConvergeResult{System: sysYolk, Workers: w}}
	src, err := h.startSourceKeys(ctx, 100)
	if err != nil {
		return fp, err
	}
	defer src.p.stop(10 * time.Second)
	m, _, _, err := h.startServing(ctx, w, src)
	if err != nil {
		return fp, err
	}
	defer m.stop()
	c, err := h.timeChanges(ctx, src, m, w, 100, sc.fetchChanges)
	if err != nil {
		return fp, err
	}
	fp.Yolk.Ms, fp.Yolk.FetchesPerChange, fp.Yolk.By = quantilesOf(c.lat), c.fetchesPerChange, c.by
	return fp, nil
}

// scaleData loads a data set of about size.Bytes at the source, starts yolk
// with sc.dataWorkers workers on it, and measures the memory at rest, the
// convergence of size.Changes changes, and the memory at rest again.
func (h *harness) scaleData(ctx context.Context, sc scaleConfig, size dataSize) DataPoint {
	dp := DataPoint{Target: size.Bytes, Workers: sc.dataWorkers}
	fail := func(err error) DataPoint {
		dp.Error = firstLine(err.Error())
		h.fail("data set of %s: %v", fmtBytes(float64(size.Bytes)), err)
		return dp
	}
	h.logf("data set of %s: load the source", fmtBytes(float64(size.Bytes)))
	src, err := h.startSourceKeys(ctx, scaleKeys)
	if err != nil {
		return fail(err)
	}
	defer src.p.stop(10 * time.Second)
	if dp.Bytes, err = src.fill(ctx, size.Bytes); err != nil {
		return fail(err)
	}
	h.logf("data set of %s: %d bytes at the source; yolk with %d workers, %d changes", fmtBytes(float64(size.Bytes)), dp.Bytes, sc.dataWorkers, size.Changes)

	if int64(dp.Bytes) > scaleMaxBytes {
		// The agent refuses a body over its limit: show it doing so.
		m, err := h.startMaster("master", sc.dataWorkers, "YOLK_SOURCE_URL="+src.url, "YOLK_PUSH_URL="+src.natsURL, scaleMaxBytesEnv)
		if err != nil {
			return fail(err)
		}
		defer m.stop()
		line, err := m.p.waitLine(ctx, 30*time.Second, "exceeds the limit")
		if err != nil {
			return fail(err)
		}
		var rec struct{ Err string }
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Err == "" {
			rec.Err = line
		}
		dp.Error = "refused by the agent: " + rec.Err
		h.logf("data set of %s: %s", fmtBytes(float64(size.Bytes)), dp.Error)
		return dp
	}

	t0 := time.Now()
	m, _, _, err := h.startServingAs(ctx, "master", sc.dataWorkers, src, scaleMaxBytesEnv)
	if err != nil {
		return fail(err)
	}
	defer m.stop()
	dp.LoadSeconds = time.Since(t0).Seconds()
	if dp.RestRSS, err = h.restRSS(ctx, m, sc.rest); err != nil {
		return fail(err)
	}
	c, err := h.timeChanges(ctx, src, m, sc.dataWorkers, scaleKeys, size.Changes)
	if err != nil {
		return fail(err)
	}
	dp.Ms, dp.PutMs, dp.FetchesPerChange = quantilesOf(c.lat), quantilesOf(c.put), c.fetchesPerChange
	if dp.AfterRSS, err = h.restRSS(ctx, m, sc.rest); err != nil {
		return fail(err)
	}
	return dp
}

// restRSS waits rest, then reads the resident memory of the master and its
// children.
func (h *harness) restRSS(ctx context.Context, m *master, rest time.Duration) ([]ProcRSS, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(rest):
	}
	st, err := m.status(ctx)
	if err != nil {
		return nil, err
	}
	ps := st.pids()
	for i := range ps {
		if ps[i].MB, err = rssMB(ps[i].PID); err != nil {
			return nil, fmt.Errorf("%s (pid %d): %w", ps[i].Role, ps[i].PID, err)
		}
	}
	return ps, nil
}

// changes is what timeChanges measured.
type changes struct {
	lat, put         []float64 // ms: change to every worker serving it; the PUT alone
	fetchesPerChange float64
	by               map[string]int
}

// timeChanges makes dataWarm untimed changes, then n timed ones, one at a
// time, to keys k0 to k<keys-1> in turn, measured as the convergence section
// of make bench measures (measureConvergence): t0 just before the PUT to
// the source, the end the latest updatedAt among the workers once the
// master's status shows them all at the new version. Fetches per change are
// the source's over the timed changes.
func (h *harness) timeChanges(ctx context.Context, src *source, m *master, workers, keys, n int) (changes, error) {
	c := changes{by: map[string]int{}}
	client := &http.Client{Timeout: 30 * time.Second}
	var s0 sourceStats
	for i := range dataWarm + n {
		if i == dataWarm {
			var err error
			if s0, err = src.stats(ctx); err != nil {
				return c, err
			}
		}
		key := "k" + strconv.Itoa(i%keys)
		value := fmt.Sprintf(`{"name":"item %d","n":%d,"change":%d}`, i%keys, i%keys, i)
		t0 := time.Now()
		v, err := src.put(ctx, client, key, value)
		if err != nil {
			return c, err
		}
		put := time.Since(t0)
		ws, err := waitVersion(ctx, m, workers, v)
		if err != nil {
			return c, fmt.Errorf("change %d (version %s): %w", i, v, err)
		}
		var end time.Time
		for _, w := range ws {
			if w.Cache.UpdatedAt.After(end) {
				end = w.Cache.UpdatedAt
			}
			if i >= dataWarm {
				c.by[w.Cache.By]++
			}
		}
		if i >= dataWarm {
			c.lat, c.put = append(c.lat, ms(end.Sub(t0))), append(c.put, ms(put))
		}
	}
	s1, err := src.stats(ctx)
	if err != nil {
		return c, err
	}
	c.fetchesPerChange = float64(s1.Fetches-s0.Fetches) / float64(n)
	return c, nil
}

// size returns the length of the source's GET /data body.
func (s *source) size(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/data", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET /data: %s", resp.Status)
	}
	return int(n), err
}

// fill PUTs padding values (pad0, pad1, ...: JSON arrays of small records,
// at most padMax bytes each) until the source's data set is about target
// bytes, and returns its size then. It runs before any yolk process reads
// the source, so none of these changes is fetched.
func (s *source) fill(ctx context.Context, target int) (int, error) {
	have, err := s.size(ctx)
	if err != nil {
		return 0, err
	}
	client := &http.Client{Timeout: time.Minute}
	for i := 0; ; i++ {
		key := "pad" + strconv.Itoa(i)
		room := target - have - len(key) - 4 // "key": and a comma
		if room < 16 {
			break
		}
		v := padValue(min(room, padMax))
		if _, err := s.put(ctx, client, key, string(v)); err != nil {
			return 0, err
		}
		have += len(key) + 4 + len(v)
	}
	return s.size(ctx)
}

// padValue returns a JSON array of small records ending in a string that
// makes it exactly n bytes long (n at least 4).
func padValue(n int) []byte {
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i := 0; ; i++ {
		rec := fmt.Appendf(nil, `{"id":%d,"text":"%s"}`, i, strings.Repeat("x", 64))
		// the record, its comma, and room for a comma, "" and the bracket
		if len(b)+1+len(rec)+4 > n {
			break
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, rec...)
	}
	if len(b) > 1 {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, strings.Repeat("y", max(0, n-len(b)-2))...)
	return append(b, '"', ']')
}

// fmtBytes writes a size as the report does: 1 KB, 100 KB, 1 MB, 50 MB (10^n bytes).
func fmtBytes(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 3, 64) + " MB"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'g', 3, 64) + " KB"
	}
	return strconv.FormatFloat(v, 'g', 3, 64) + " B"
}
