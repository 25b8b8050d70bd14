//go:build !yolkfault

package yolk

import (
	"log/slog"
	"net/http"
)

// withFaults returns h: the test-only faults (fault.go) are compiled only with
// the yolkfault build tag.
func withFaults(h http.Handler, _ *slog.Logger) http.Handler { return h }
