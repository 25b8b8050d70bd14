package yolk

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// nullWriter is a ResponseWriter that keeps nothing, so that a benchmark
// measures the wrapper alone.
type nullWriter struct{ h http.Header }

func (d *nullWriter) Header() http.Header         { return d.h }
func (d *nullWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *nullWriter) WriteHeader(int)             {}

// BenchmarkStallWatch is the cost the stall watch adds to each request of a
// worker, beside the handler alone, on every P at once as under load.
func BenchmarkStallWatch(b *testing.B) {
	body := []byte(`{"name":"item 7","n":7}`)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK); w.Write(body) })
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{{"handler", h}, {"watched", newStallWatch(10 * time.Second).wrap(h)}} {
		b.Run(tc.name, func(b *testing.B) {
			r := httptest.NewRequest("GET", "/data/k7", nil)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				w := &nullWriter{h: http.Header{}}
				for pb.Next() {
					tc.h.ServeHTTP(w, r)
				}
			})
		})
	}
}
