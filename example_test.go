package yolk_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/yolkgo/yolk"
	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/schedule"
)

// greeter is a service whose workers greet each visitor with a number the
// agent keeps for the whole service.
var greeter = yolk.App{
	Name: "greeter",
	Agent: func(a *yolk.Agent) error {
		var visitors atomic.Int64
		return a.On("visit", func(context.Context, bus.Message) (any, error) {
			return visitors.Add(1), nil
		})
	},
	Worker: func(w *yolk.Worker) error {
		w.Handle(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			m, err := w.RequestAgent(r.Context(), "visit", nil)
			var n int
			if err == nil {
				err = m.Decode(&n)
			}
			if err != nil {
				http.Error(rw, err.Error(), http.StatusBadGateway)
				return
			}
			fmt.Fprintf(rw, "hello, visitor %d\n", n)
		}))
		return nil
	},
}

// A service in one program: Run (or Main, in a main function) starts the
// master, which starts this same program again as the agent and two workers.
// Each request reaches one of the workers, which asks the agent for the
// visitor's number.
func Example() {
	dir, _ := os.MkdirTemp("", "greeter")
	defer os.RemoveAll(dir)
	addr := freeAddr()
	environ := append(os.Environ(), "YOLK_WORKERS=2", "YOLK_HTTP_ADDR="+addr, "YOLK_RUN_DIR="+dir,
		envTestApp+"=greeter") // the test binary runs greeter when started as a child (TestMain)

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- yolk.Run(ctx, greeter, nil, environ, io.Discard, io.Discard) }()

	for range 3 {
		fmt.Print(get("http://" + addr + "/"))
	}
	stop() // as SIGTERM would: the workers, then the agent, then the bus
	fmt.Println("stopped:", <-done)
	// Output:
	// hello, visitor 1
	// hello, visitor 2
	// hello, visitor 3
	// stopped: <nil>
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// client closes each connection after its request: a stopping worker waits
// for a connection that never sent one.
var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// get returns the body of GET url, trying until the service answers 200 (it
// starts) or 30 seconds have passed.
func get(url string) string {
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return string(body)
			}
			err = fmt.Errorf("%s: %s", resp.Status, body)
		}
		if time.Now().After(deadline) {
			return fmt.Sprintf("GET %s: %v\n", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ticker is a service with a schedule of type All: every 20ms each worker
// tells the agent it ran, and GET / answers how many workers have.
func ticker() yolk.App {
	var mu sync.Mutex
	ran := make(map[string]bool) // the agent's: the workers that ran "tick"
	var w *yolk.Worker           // a worker's
	return yolk.App{
		Schedules: func() []yolk.Schedule {
			return []yolk.Schedule{{
				Spec: schedule.Spec{Name: "tick", Interval: 20 * time.Millisecond, Type: schedule.All},
				Task: func(ctx context.Context, _ schedule.Run) error { return w.SendToAgent(ctx, "ticked", nil) },
			}}
		},
		Agent: func(a *yolk.Agent) error {
			if err := a.On("ticked", func(_ context.Context, m bus.Message) (any, error) {
				mu.Lock()
				defer mu.Unlock()
				ran[m.From] = true
				return nil, nil
			}); err != nil {
				return err
			}
			return a.On("count", func(context.Context, bus.Message) (any, error) {
				mu.Lock()
				defer mu.Unlock()
				return len(ran), nil
			})
		},
		Worker: func(worker *yolk.Worker) error {
			w = worker
			w.Handle(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				m, err := w.RequestAgent(r.Context(), "count", nil)
				if err != nil {
					http.Error(rw, err.Error(), http.StatusBadGateway)
					return
				}
				fmt.Fprintf(rw, "the schedule ran in %s workers\n", m.Data)
			}))
			return nil
		},
	}
}

// A schedule is declared once, next to its task: the agent's timer fires it,
// and with type schedule.All every worker runs the task.
func ExampleSchedule() {
	dir, _ := os.MkdirTemp("", "ticker")
	defer os.RemoveAll(dir)
	addr := freeAddr()
	environ := append(os.Environ(), "YOLK_WORKERS=2", "YOLK_HTTP_ADDR="+addr, "YOLK_RUN_DIR="+dir, envTestApp+"=ticker")

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- yolk.Run(ctx, ticker(), nil, environ, io.Discard, io.Discard) }()

	want := "the schedule ran in 2 workers\n"
	deadline := time.Now().Add(30 * time.Second)
	got := get("http://" + addr + "/")
	for got != want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		got = get("http://" + addr + "/")
	}
	fmt.Print(got)
	stop()
	fmt.Println("stopped:", <-done)
	// Output:
	// the schedule ran in 2 workers
	// stopped: <nil>
}
