//go:build yolkfault

package yolk

import (
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// Faults for the end-to-end tests, compiled only with the yolkfault build tag
// (go build -tags yolkfault), so that no production binary can be made to hang:
//
//	GET /_yolk/fault/hang      this request blocks for ever, and so does every
//	                           later one: a deadlocked handler (the response's
//	                           headers, with X-Yolk-Fault-Pid, are sent first)
//	GET /_yolk/fault/grow?mib=N the worker maps and touches N MiB more, and holds them
//
// With ?pid=P, a worker other than P answers 421 (the port is shared: the
// test asks again until P gets it).
func withFaults(h http.Handler, log *slog.Logger) http.Handler {
	var (
		hung  atomic.Bool
		never = make(chan struct{})
		mu    sync.Mutex
		held  [][]byte
	)
	pid := strconv.Itoa(os.Getpid())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case hung.Load():
			<-never
		case strings.HasPrefix(r.URL.Path, "/_yolk/fault/") && r.URL.Query().Has("pid") && r.URL.Query().Get("pid") != pid:
			// meant for another worker of the shared port: the test tries again
			w.Header().Set("X-Yolk-Fault-Pid", pid)
			http.Error(w, "not this worker", http.StatusMisdirectedRequest)
		case r.URL.Path == "/_yolk/fault/hang":
			hung.Store(true)
			log.Warn("fault: the HTTP handler blocks for ever from now on")
			w.Header().Set("X-Yolk-Fault-Pid", pid)
			w.WriteHeader(http.StatusOK)
			http.NewResponseController(w).Flush()
			<-never
		case r.URL.Path == "/_yolk/fault/grow":
			mib, err := strconv.Atoi(r.URL.Query().Get("mib"))
			if err != nil || mib < 1 || mib > 4096 {
				http.Error(w, "want mib=1..4096", http.StatusBadRequest)
				return
			}
			// mapped outside the Go heap: the race detector's shadow does not
			// grow with it, and the GC does not walk it
			b, err := syscall.Mmap(-1, 0, mib<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE|syscall.MAP_POPULATE)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			mu.Lock()
			held = append(held, b)
			mu.Unlock()
			log.Warn("fault: the worker grew", "mib", mib)
			w.Header().Set("X-Yolk-Fault-Pid", pid)
		default:
			h.ServeHTTP(w, r)
		}
	})
}
