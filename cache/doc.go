// Package cache is a worker's in-memory copy of the remote data set.
//
// A [Snapshot] is one immutable version of the data set, decoded and
// validated once and pre-encoded so that serving it allocates (almost)
// nothing. A [Store] holds the current snapshot of a process: reads take no
// lock, and [Store.Swap] installs a snapshot only if its revision is higher than
// the one it replaces, so refreshes that race each other end on the newest data.
// Revisions come from [Shared], the service's copy on the bus, the one authority
// that orders snapshots: no clock orders anything.
//
// A [Source] is the remote data source; [HTTPSource] talks to one over HTTP
// with ETag and If-None-Match. A fetch that fails or returns something
// malformed yields an error and never a partial snapshot, so the caller keeps
// serving its last good one.
//
// [NewHandler] is the worker's HTTP API over a Store (GET /data and
// GET /data/{key}); [Metrics] are its metrics, in a registry of package prom
// that the caller passes (a process's own).
//
// The refresh protocol (force, pull and push refreshes, fetching a change once
// per service, publishing it to the shared copy) is described in refresh.go.
// The rest of the package knows nothing of the bus, schedules or processes:
// it imports no other yolk package but prom, for the metrics.
package cache
