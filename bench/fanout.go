package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"time"
)

// The fan-out protocol, the same for yolk's bus and raw NATS: the sender
// publishes a begin message, n messages and an end message to every
// receiver; each receiver counts what it gets, reports its count every
// ProgressEvery messages (the sender never runs more than a window ahead of
// the slowest receiver, so nothing piles up in a server or client buffer), and
// on the end message acks with its count and the time it received the last
// message. Every message published reaches every receiver: a receiver whose
// count falls short of n has lost messages, and the run says so.

// fanSpec is one fan-out measurement: reps runs of n messages of size bytes,
// after an untimed run of warm messages when warm > 0.
type fanSpec struct {
	Size int `json:"size"`
	N    int `json:"n"`
	Reps int `json:"reps"`
	Warm int `json:"warm,omitempty"`
}

// runFanPlan runs the plan's fan-out specs in order, each with the sender
// newSender makes for its size: the untimed warm-up run if it has one, then its
// measured runs, emitting a record for each of those.
func runFanPlan(ctx context.Context, plan peerPlan, t *fanTracker, emit func(record), newSender func(size int) fanSender) error {
	run := 0
	for _, spec := range plan.Fanout {
		s := newSender(spec.Size)
		if spec.Warm > 0 {
			run++
			if _, err := runFan(ctx, s, t, plan.Workers, run, spec.Size, spec.Warm); err != nil {
				return fmt.Errorf("fan-out %d B, warm-up run: %w", spec.Size, err)
			}
		}
		for rep := range spec.Reps {
			run++
			r, err := runFan(ctx, s, t, plan.Workers, run, spec.Size, spec.N)
			if err != nil {
				return fmt.Errorf("fan-out %d B, run %d: %w", spec.Size, rep+1, err)
			}
			emit(record{Test: "fanout", Size: spec.Size, N: spec.N, Rep: rep + 1,
				TotalMsgsPerSec: r.TotalMsgsPerSec, PerWorkerMsgsPerSec: r.PerWorkerMsgsPerSec, Lost: r.Lost})
		}
	}
	return nil
}

// fanBegin opens a run.
type fanBegin struct {
	Run           int `json:"run"`
	N             int `json:"n"`
	ProgressEvery int `json:"progressEvery"`
}

// fanProgress is a receiver's count so far.
type fanProgress struct {
	From  string `json:"from,omitempty"`
	Run   int    `json:"run"`
	Count int    `json:"count"`
}

// fanAck is a receiver's answer to the end message.
type fanAck struct {
	From  string `json:"from,omitempty"`
	Run   int    `json:"run"`
	Count int    `json:"count"`
	Last  int64  `json:"last"`           // wall clock, Unix ns, when the last message arrived
	Usage usage  `json:"usage,omitzero"` // what the receiver used in the run (bench -cpustat)
}

// fanSender is how one system sends a run's messages to every receiver.
type fanSender interface {
	system() string // who sends: "yolk" or "raw NATS"
	begin(b fanBegin) error
	send() error // one message of the run's size
	end(run int) error
	flush(ctx context.Context) error // until the server has what was sent
}

// windowBytes bounds how far, in payload bytes, the sender may run ahead of
// the slowest receiver.
const windowBytes = 8 << 20

// fanTracker collects the receivers' progress and acks for the sender. It is
// safe for concurrent use (they arrive on the transport's goroutines).
type fanTracker struct {
	mu       sync.Mutex
	run      int
	progress map[string]int
	acks     map[string]fanAck
	changed  chan struct{} // closed and replaced at each update
}

func newFanTracker() *fanTracker { return &fanTracker{changed: make(chan struct{})} }

func (t *fanTracker) reset(run int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.run, t.progress, t.acks = run, make(map[string]int), make(map[string]fanAck)
}

func (t *fanTracker) notifyLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

func (t *fanTracker) onProgress(from string, p fanProgress) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.Run == t.run && p.Count > t.progress[from] {
		t.progress[from] = p.Count
		t.notifyLocked()
	}
}

func (t *fanTracker) onAck(from string, a fanAck) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if a.Run == t.run {
		t.acks[from] = a
		t.notifyLocked()
	}
}

// minProgress is the slowest receiver's count: 0 until all have reported.
func (t *fanTracker) minProgress(workers int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.progress) < workers {
		return 0
	}
	least := -1
	for _, c := range t.progress {
		if least < 0 || c < least {
			least = c
		}
	}
	return least
}

// waitChange waits for the next update, at most timeout.
func (t *fanTracker) waitChange(ctx context.Context, timeout time.Duration) error {
	t.mu.Lock()
	ch := t.changed
	t.mu.Unlock()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-ch:
		return nil
	case <-timer.C:
		return errors.New("no progress")
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (t *fanTracker) ackList() []fanAck {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]fanAck, 0, len(t.acks))
	for from, a := range t.acks {
		a.From = from
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].From < out[j].From })
	return out
}

// fanRep is the outcome of one run.
type fanRep struct {
	TotalMsgsPerSec     float64
	PerWorkerMsgsPerSec float64
	Lost                int
}

// stallTimeout is how long the sender waits for a receiver's progress or ack
// before it gives up on the run.
const stallTimeout = 15 * time.Second

// runFan sends one run of n messages of size bytes to workers receivers and
// waits for their acks. Throughput is n*workers over the time from just before
// the first message to the last receiver's last message (wall clocks of one
// host), as baseline.js computes it.
func runFan(ctx context.Context, s fanSender, t *fanTracker, workers, run, size, n int) (fanRep, error) {
	window := max(64, windowBytes/size)
	every := max(1, window/8)
	batch := max(1, min(1000, window/8))
	t.reset(run)
	stat := startCPUStat()
	if err := s.begin(fanBegin{Run: run, N: n, ProgressEvery: every}); err != nil {
		return fanRep{}, fmt.Errorf("send begin: %w", err)
	}
	t0 := time.Now().UnixNano()
	for sent := 0; sent < n; {
		limit := min(n, t.minProgress(workers)+window)
		if sent >= limit {
			if err := t.waitChange(ctx, stallTimeout); err != nil {
				return fanRep{}, fmt.Errorf("after %d of %d messages: %w from the receivers (slowest at %d of %d)", sent, n, err, t.minProgress(workers), n)
			}
			continue
		}
		for end := min(limit, sent+batch); sent < end; sent++ {
			if err := s.send(); err != nil {
				return fanRep{}, fmt.Errorf("send message %d: %w", sent, err)
			}
		}
		if err := s.flush(ctx); err != nil {
			return fanRep{}, fmt.Errorf("flush: %w", err)
		}
	}
	if err := s.end(run); err != nil {
		return fanRep{}, fmt.Errorf("send end: %w", err)
	}
	if err := s.flush(ctx); err != nil {
		return fanRep{}, fmt.Errorf("flush: %w", err)
	}
	for len(t.ackList()) < workers {
		if err := t.waitChange(ctx, stallTimeout); err != nil {
			return fanRep{}, fmt.Errorf("acks: %d of %d receivers acked: %w", len(t.ackList()), workers, err)
		}
	}
	stat.finish(s.system(), size, n, t.ackList())
	var last int64
	lost := 0
	for _, a := range t.ackList() {
		last = max(last, a.Last)
		lost += max(0, n-a.Count)
	}
	secs := float64(last-t0) / 1e9
	if secs <= 0 {
		return fanRep{}, fmt.Errorf("the last message arrived %v before the first was sent", time.Duration(last-t0))
	}
	total := float64(n*workers) / secs
	return fanRep{TotalMsgsPerSec: total, PerWorkerMsgsPerSec: total / float64(workers), Lost: lost}, nil
}

// fanCounter is a receiver's side of the protocol. Its methods are called
// from one goroutine, in the order the messages arrive.
type fanCounter struct {
	begun fanBegin
	count int
	last  int64
	// report gets the count every ProgressEvery messages; it must not block.
	report func(fanProgress)
	// profile, when set, names the receiver in the CPU profile it writes of each
	// run into $BENCH_PROFILE_DIR (bench -cpuprofile).
	profile string
	prof    *os.File
	usage0  usage // at begin, with bench -cpustat
}

// envProfileDir is where receivers write their profiles (bench -cpuprofile).
const envProfileDir = "BENCH_PROFILE_DIR"

func (c *fanCounter) begin(b fanBegin) {
	c.begun, c.count, c.last = b, 0, 0
	if os.Getenv(envCPUStat) != "" {
		c.usage0 = usageOf(os.Getpid())
	}
	if dir := os.Getenv(envProfileDir); dir != "" && c.profile != "" && c.prof == nil {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d-n%d-run%d.prof", c.profile, os.Getpid(), b.N, b.Run)))
		if err == nil && pprof.StartCPUProfile(f) == nil {
			c.prof = f
		}
	}
}

// stopProfile ends the run's CPU profile, if one is being written.
func (c *fanCounter) stopProfile() {
	if c.prof != nil {
		pprof.StopCPUProfile()
		c.prof.Close()
		c.prof = nil
	}
}

func (c *fanCounter) msg() {
	c.count++
	c.last = time.Now().UnixNano()
	if every := c.begun.ProgressEvery; every > 0 && c.count%every == 0 {
		c.report(fanProgress{Run: c.begun.Run, Count: c.count})
	}
}

func (c *fanCounter) ack(run int) fanAck {
	c.stopProfile()
	a := fanAck{Run: run, Count: c.count, Last: c.last}
	if os.Getenv(envCPUStat) != "" {
		a.Usage = usageOf(os.Getpid()).minus(c.usage0)
	}
	return a
}

// latest puts v in ch (capacity 1), replacing a value not yet taken.
func latest[T any](ch chan T, v T) {
	for {
		select {
		case ch <- v:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

// jsonString returns a JSON string value of exactly size bytes, quotes
// included: the yolk fan-out payload (the data field of the envelope).
func jsonString(size int) []byte {
	size = max(size, 2)
	return []byte(`"` + strings.Repeat("x", size-2) + `"`)
}
