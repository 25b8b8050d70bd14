// Package metrics is the service's metrics on package prom: the registry
// every process starts with (the Go and process series and yolk_build_info),
// the request-latency histogram around a worker's handler, and [Merge],
// which reads the expositions of several processes in the Prometheus text
// format and joins them into one, each sample labelled with the process it
// came from. It knows nothing of the bus: the master asks the processes for
// their text and hands it to Merge.
package metrics
