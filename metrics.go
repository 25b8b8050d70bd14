package yolk

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/internal/command/master"
	"github.com/yolkgo/yolk/internal/metrics"
	"github.com/yolkgo/yolk/prom"
)

// Metrics returns the process's metrics registry (package prom), where the
// application registers its own counters, gauges and histograms: the master serves
// every process's registry in one exposition on GET /metrics of its admin
// address (YOLK_ADMIN_ADDR), each sample labelled with the process's role
// and, for a worker, its slot (0 to N-1, kept across restarts and reloads).
// Do not add labels named role or slot: the master renames them
// exported_role and exported_slot.
//
// The runtime registers the Go runtime's series (go_*), the process's
// (process_*), yolk_build_info{version,goversion} and, in a worker,
// yolk_http_request_duration_seconds{class} around the handler of
// [Worker.Handle], code being the status class (2xx, 4xx, ...). Metrics
// names should follow Prometheus's conventions (a unit suffix, _total for a
// counter) and labels keep few values. The registry is the process's own and
// is safe for concurrent use.
func (p *Process) Metrics() *prom.Registry { return p.metrics }

// MetricsHandler serves the process's registry in the Prometheus text
// format: a worker's own GET /metrics, for a direct look at one process.
// The master's /metrics has every process.
func (p *Process) MetricsHandler() http.Handler { return p.metrics }

// newMetrics is a process's registry with the runtime's series.
func newMetrics() *prom.Registry { return metrics.NewRegistry(master.Version()) }

// exposition is the answer to the master's metrics request: the registry in
// the text format.
func (p *Process) exposition(context.Context, bus.Message) (any, error) {
	var b strings.Builder
	if _, err := p.metrics.WriteTo(&b); err != nil {
		return nil, fmt.Errorf("write metrics: %w", err)
	}
	return b.String(), nil
}
