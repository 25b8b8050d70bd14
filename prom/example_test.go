package prom_test

import (
	"os"

	"github.com/yolkgo/yolk/prom"
)

func Example() {
	reg := prom.NewRegistry()
	jobs := reg.CounterVec("app_jobs_total", "Jobs run, by result.", "result")
	jobs.With("ok").Inc()
	jobs.With("ok").Inc()
	reg.Histogram("app_job_seconds", "Time a job took.", []float64{0.1, 1}).Observe(0.25)
	reg.WriteTo(os.Stdout)
	// Output:
	// # HELP app_jobs_total Jobs run, by result.
	// # TYPE app_jobs_total counter
	// app_jobs_total{result="ok"} 2
	// # HELP app_job_seconds Time a job took.
	// # TYPE app_job_seconds histogram
	// app_job_seconds_bucket{le="0.1"} 0
	// app_job_seconds_bucket{le="1"} 1
	// app_job_seconds_bucket{le="+Inf"} 1
	// app_job_seconds_sum 0.25
	// app_job_seconds_count 1
}
