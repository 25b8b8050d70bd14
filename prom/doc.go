// Package prom is yolk's metrics in the Prometheus text format: a [Registry]
// of counters, gauges and histograms, with or without labels, that writes
// itself as an exposition (version 0.0.4), and the Go runtime's and the
// process's series (go_*, process_*) that every yolk process serves.
//
// It is not a client library of Prometheus's: no global registry, no
// protocol buffers, no summaries of your own. Each process has one registry
// (yolk.Process.Metrics); the master asks every process for its text and
// serves them merged. The package uses the standard library only.
package prom
