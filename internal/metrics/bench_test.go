package metrics

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/yolkgo/yolk/prom"
)

func BenchmarkInstrument(b *testing.B) {
	h, _ := Instrument(prom.NewRegistry(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	w, r := httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil)
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}
