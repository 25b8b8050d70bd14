package yolk

import (
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
		if got := s.stalled(time.Now()); !strings.Contains(got, "1 HTTP requests in flight and none completed for 10s") {
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
