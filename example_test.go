package yolk_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/yolkgo/yolk"
	"github.com/yolkgo/yolk/bus"
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

// get returns the body of GET url, trying until the service answers 200 (it
// starts) or 30 seconds have passed.
func get(url string) string {
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
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
