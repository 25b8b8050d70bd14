package yolk

import (
	"bytes"
	"context"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/internal/command/master"
	"github.com/yolkgo/yolk/internal/metrics"
)

// Metrics returns the process's metrics registry (github.com/prometheus/client_golang),
// where the application registers its own collectors: the master serves
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
// counter) and labels keep few values. The registry is the process's own, not
// client_golang's global one, and is safe for concurrent use.
func (p *Process) Metrics() *prometheus.Registry { return p.metrics }

// MetricsHandler serves the process's registry in the Prometheus exposition
// formats: a worker's own GET /metrics, for a direct look at one process.
// The master's /metrics has every process.
func (p *Process) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(p.metrics, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// newMetrics is a process's registry with the runtime's series.
func newMetrics() *prometheus.Registry { return metrics.NewRegistry(master.Version()) }

// exposition is the answer to the master's metrics request: the registry in
// the text format. What gathers is sent even if a collector failed; the
// error is then logged.
func (p *Process) exposition(context.Context, bus.Message) (any, error) {
	fams, err := p.metrics.Gather()
	if err != nil {
		p.Log.Warn("gather metrics", "err", err)
	}
	var b bytes.Buffer
	for _, f := range fams {
		if _, err := expfmt.MetricFamilyToText(&b, f); err != nil {
			return nil, fmt.Errorf("write metrics: %w", err)
		}
	}
	return b.String(), nil
}
