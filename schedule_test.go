package yolk_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/yolkgo/yolk"
	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/schedule"
)

// everyRun is a service with a schedule of type Worker every 5ms: the worker
// that runs it tells the agent its seq, and GET / answers the seqs the agent
// has heard of.
func everyRun() yolk.App {
	var mu sync.Mutex
	var seqs []uint64 // the agent's
	var w *yolk.Worker
	return yolk.App{
		Schedules: func() []yolk.Schedule {
			return []yolk.Schedule{{
				Spec: schedule.Spec{Name: "tick", Interval: 5 * time.Millisecond, Type: schedule.Worker},
				Task: func(ctx context.Context, r schedule.Run) error { return w.SendToAgent(ctx, "ran", r.Seq) },
			}}
		},
		Agent: func(a *yolk.Agent) error {
			if err := a.On("ran", func(_ context.Context, m bus.Message) (any, error) {
				var seq uint64
				if err := m.Decode(&seq); err != nil {
					return nil, err
				}
				mu.Lock()
				defer mu.Unlock()
				seqs = append(seqs, seq)
				return nil, nil
			}); err != nil {
				return err
			}
			return a.On("seqs", func(context.Context, bus.Message) (any, error) {
				mu.Lock()
				defer mu.Unlock()
				return slices.Clone(seqs), nil
			})
		},
		Worker: func(worker *yolk.Worker) error {
			w = worker
			w.Handle(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				m, err := w.RequestAgent(r.Context(), "seqs", nil)
				if err != nil {
					http.Error(rw, err.Error(), http.StatusBadGateway)
					return
				}
				rw.Write(m.Data)
			}))
			return nil
		},
	}
}

// No run of a Worker schedule is lost while the workers are replaced: a worker
// takes runs only once it is ready, and a stopping one refuses them, so the
// agent sends each to a worker that runs it.
func TestScheduleRunsSurviveReloads(t *testing.T) {
	addr := freeAddr()
	environ := append(os.Environ(), "YOLK_WORKERS=2", "YOLK_HTTP_ADDR="+addr, "YOLK_RUN_DIR="+t.TempDir(),
		envTestApp+"=everyRun")
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var stderr syncBuffer
	done := make(chan error, 1)
	go func() { done <- yolk.Run(ctx, everyRun(), nil, environ, io.Discard, &stderr) }()
	defer func() {
		if t.Failed() {
			t.Logf("master's log:\n%s", stderr.String())
		}
	}()
	seqs := func() []uint64 {
		var s []uint64
		if err := json.Unmarshal([]byte(get("http://"+addr+"/")), &s); err != nil {
			t.Fatalf("GET /: %v", err)
		}
		return s
	}
	waitFor(t, 30*time.Second, "the first runs", func() bool { return len(seqs()) > 10 })

	const reloads = 3
	for i := 1; i <= reloads; i++ {
		var out strings.Builder
		if err := yolk.Run(t.Context(), everyRun(), []string{"reload"}, environ, &out, io.Discard); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		waitFor(t, 60*time.Second, fmt.Sprintf("reload %d to end", i), func() bool {
			return strings.Count(stderr.String(), `"msg":"reload done"`) == i
		})
	}
	last := seqs()
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}

	// A run that comes while the previous one still goes is skipped, by design
	// (and logged): under -race the task can take longer than the interval.
	skipped := make(map[uint64]bool)
	for line := range strings.Lines(stderr.String()) {
		var rec struct {
			Msg string
			Seq uint64
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "schedule run not started" && strings.Contains(line, "previous run still going") {
			skipped[rec.Seq] = true
		}
	}
	got := slices.Clone(last)
	slices.Sort(got)
	var missing []uint64
	for want, i := got[0], 0; i < len(got); want++ {
		if got[i] != want {
			if !skipped[want] {
				missing = append(missing, want)
			}
			continue
		}
		for i < len(got) && got[i] == want {
			i++
		}
	}
	if len(missing) > 0 {
		t.Errorf("runs %v of %d..%d never reached the agent across %d reloads", missing, got[0], got[len(got)-1], reloads)
	}
	if dup := len(got) - len(slices.Compact(got)); dup > 0 {
		t.Errorf("%d runs ran twice", dup)
	}
	t.Logf("%d runs (seq %d to %d) across %d reloads, %d skipped as the previous one still went, %d lost",
		len(got), got[0], got[len(got)-1], reloads, len(skipped), len(missing))
}
