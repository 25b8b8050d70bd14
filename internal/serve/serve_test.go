package serve

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Drain answers every request whose handler ran: keep-alive clients loop on a
// server until it drains, and the handler must not have run more often than
// the clients got a 200. (Closing idle connections with SetKeepAlivesEnabled
// lost the response of a request read at that moment in about half the rounds;
// the client then sent it again elsewhere.)
func TestDrainAnswersEveryRequestItRuns(t *testing.T) {
	const rounds = 50
	for round := range rounds {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var handled, ok atomic.Int64
		srv := NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			handled.Add(1)
			io.WriteString(w, "ok")
		}), slog.New(slog.DiscardHandler))
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				c := &http.Client{Timeout: 5 * time.Second}
				defer c.CloseIdleConnections()
				for {
					select {
					case <-stop:
						return
					default:
					}
					resp, err := c.Get("http://" + ln.Addr().String() + "/")
					if err != nil {
						continue // the listener is closed: the other workers' turn
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						ok.Add(1)
					}
				}
			})
		}
		deadline := time.Now().Add(10 * time.Second)
		for ok.Load() < 100 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		ln.Close()
		<-served
		if err := srv.Drain(t.Context()); err != nil {
			t.Errorf("round %d: Drain = %v", round, err)
		}
		close(stop)
		wg.Wait()
		if h, o := handled.Load(), ok.Load(); h != o {
			t.Errorf("round %d: the handler ran %d times, the clients got %d answers of 200", round, h, o)
		}
	}
}
