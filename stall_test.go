package yolk

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestStallWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newStallWatch(10 * time.Second)
		release := make(chan struct{})
		h := s.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				<-release
			}
		}))
		serve := func(path string) { h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil)) }
		check := func(want bool, when string) {
			t.Helper()
			if got := s.stalled(time.Now()); (got != "") != want {
				t.Errorf("stalled() %s = %q, want stalled %v", when, got, want)
			}
		}
		time.Sleep(time.Minute) // idle for long: no stall
		check(false, "when idle")

		go serve("/slow")
		synctest.Wait()
		time.Sleep(9 * time.Second)
		check(false, "9s into one request")
		// others complete meanwhile: a long request is no stall
		for range 3 {
			time.Sleep(5 * time.Second)
			serve("/fast")
		}
		check(false, "with a long request while others complete")
		time.Sleep(10 * time.Second)
		check(true, "10s after the last completion, one request in flight")
		if got := s.stalled(time.Now()); !strings.Contains(got, "1 HTTP requests in flight and none progressed for 10s") {
			t.Errorf("stalled() = %q, want the count and the time", got)
		}
		if s.err() == nil {
			t.Errorf("err() = nil while stalled")
		}
		close(release)
		synctest.Wait()
		check(false, "once the request completed")
	})
	var off *stallWatch = newStallWatch(0)
	if off != nil || off.stalled(time.Now()) != "" || off.err() != nil {
		t.Errorf("newStallWatch(0) = %v, want nil, never stalled", off)
	}
}

// A response that is written to or flushed progresses: a slow download, a
// stream of events. A handler that sends its headers once and then blocks
// (the fault hook's hang) stalls.
func TestStallWatchProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newStallWatch(10 * time.Second)
		block := make(chan struct{})
		h := s.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/events": // an event every 5s for a minute
				f, ok := w.(http.Flusher)
				if !ok {
					t.Errorf("the ResponseWriter under a stallWatch is no http.Flusher")
					return
				}
				for range 12 {
					io.WriteString(w, "data: tick\n\n")
					f.Flush()
					time.Sleep(5 * time.Second)
				}
			case "/hang": // headers, then nothing
				w.WriteHeader(http.StatusOK)
				if err := http.NewResponseController(w).Flush(); err != nil {
					t.Errorf("ResponseController.Flush() = %v under a stallWatch", err)
				}
				<-block
			}
		}))
		rec := httptest.NewRecorder()
		go h.ServeHTTP(rec, httptest.NewRequest("GET", "/events", nil))
		for i := range 11 {
			time.Sleep(5 * time.Second)
			synctest.Wait()
			if got := s.stalled(time.Now()); got != "" {
				t.Fatalf("stalled() %ds into a stream that writes every 5s = %q, want none", 5*(i+1), got)
			}
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if !rec.Flushed || !strings.Contains(rec.Body.String(), "data: tick") {
			t.Errorf("recorder after the stream: flushed %v, body %q; want the events flushed through", rec.Flushed, rec.Body.String())
		}

		go h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/hang", nil))
		synctest.Wait()
		time.Sleep(9 * time.Second)
		if got := s.stalled(time.Now()); got != "" {
			t.Errorf("stalled() 9s after the headers were sent = %q, want none yet", got)
		}
		time.Sleep(time.Second)
		if got := s.stalled(time.Now()); !strings.Contains(got, "1 HTTP requests in flight and none progressed for 10s") {
			t.Errorf("stalled() 10s after the headers, nothing since = %q, want stalled", got)
		}
		close(block)
		synctest.Wait()
	})
}

// A hijacked connection (a websocket) is the handler's: however long it
// lasts, the worker is not stalled.
func TestStallWatchHijack(t *testing.T) {
	s := newStallWatch(10 * time.Second)
	hijacked := make(chan struct{})
	release := make(chan struct{})
	srv := httptest.NewServer(s.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var conn net.Conn
		var err error
		if hj, ok := w.(http.Hijacker); !ok {
			t.Errorf("the ResponseWriter under a stallWatch is no http.Hijacker")
		} else if conn, _, err = hj.Hijack(); err != nil {
			t.Errorf("Hijack() = %v", err)
		}
		close(hijacked)
		<-release
		if conn != nil {
			conn.Close()
		}
	})))
	defer srv.Close()
	defer close(release)
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hijacked:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not run within 10s")
	}
	if got := s.stalled(time.Now().Add(time.Hour)); got != "" {
		t.Errorf("stalled() an hour into a hijacked connection = %q, want none", got)
	}
}
