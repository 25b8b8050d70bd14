package prom

import (
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"
)

// RegisterRuntime registers the Go runtime's series (go_*: memory, garbage
// collection, goroutines, threads) and the process's (process_*: CPU, memory,
// file descriptors, start time, network; from /proc, so on Linux only: on
// other systems they are left out). Their names are those of Prometheus's
// Go client, so that dashboards made for it work.
func (r *Registry) RegisterRuntime() {
	names := make([]string, 0, len(memStats)+8)
	for _, m := range memStats {
		names = append(names, m.name)
	}
	names = append(names, "go_gc_duration_seconds", "go_gc_duration_seconds_sum", "go_gc_duration_seconds_count",
		"go_gc_gogc_percent", "go_gc_gomemlimit_bytes", "go_goroutines", "go_info", "go_sched_gomaxprocs_threads", "go_threads")
	r.add(names, nil, writeGo)
	p := newProcStats()
	r.add(processNames, nil, p.write)
}

// memStats are the go_memstats_* series, from runtime.MemStats.
var memStats = []struct {
	name, help string
	kind       Kind
	value      func(*runtime.MemStats) float64
}{
	{"go_memstats_alloc_bytes", "Bytes of allocated heap objects (HeapAlloc).", KindGauge, func(m *runtime.MemStats) float64 { return float64(m.Alloc) }},
	{"go_memstats_alloc_bytes_total", "Bytes allocated for heap objects since the start, freed or not (TotalAlloc).", KindCounter, func(m *runtime.MemStats) float64 { return float64(m.TotalAlloc) }},
	{"go_memstats_buck_hash_sys_bytes", "Bytes of memory in the profiling bucket hash tables (BuckHashSys).", KindGauge, func(m *runtime.MemStats) float64 { return float64(m.BuckHashSys) }},
	{"go_memstats_frees_total", "Heap objects freed since the start (Frees).", KindCounter, func(m *runtime.MemStats) float64 { return float64(m.Frees) }},
	{"go_memstats_gc_sys_bytes", "Bytes of memory in garbage collection metadata (GCSys).", KindGauge, func(m *runtime.MemStats) float64 { return float64(m.GCSys) }},
	{"go_memstats_heap_alloc_bytes", "Bytes of allocated heap objects, as go_memstats_alloc_bytes (HeapAlloc).", KindGauge, func(m *runtime.MemStats) float64 { return float64(m.HeapAlloc) }},
	{"go_memstats_heap_idle_bytes", "Bytes in idle (unused) heap spans (HeapIdle).", KindGauge, func(m *runtime.MemStats) float64 { return float64(m.HeapIdle) }},
	{"go_memstats_heap_inuse_bytes", "Bytes in in-use heap spans (HeapInuse).", KindGauge, func(m *runtime.MemStats) float64 { return float64(m.HeapInuse) }},
	{"go_memstats_heap_objects", "Allocated heap objects (HeapObjects).", KindGauge, func(m *runtime.MemStats) float64 { return float64(m.HeapObjects) }},
	{"go_memstats_heap_released_bytes", "Bytes of physical memory returned to the OS (HeapReleased).", KindGauge, func(m *runtime.MemStats) float64 { return float64(m.HeapReleased) }},
	{"go_memstats_heap_sys_bytes", "Bytes of heap memory obtained from the OS (HeapSys).", KindGauge, func(m *runtime.MemStats) float64 { return float64(m.HeapSys) }},
	{"go_memstats_last_gc_time_seconds", "When the last garbage collection finished, in seconds since the epoch (LastGC).", KindGauge, func(m *runtime.MemStats) float64 { return float64(m.LastGC) / 1e9 }},
	{"go_memstats_mallocs_total", "Heap objects allocated since the start (Mallocs).", KindCounter, func(m *runtime.MemStats) float64 { return float64(m.Mallocs) }},
	{"go_memstats_mcache_inuse_bytes", "Bytes of allocated mcache structures (MCacheInuse).", KindGauge, func(m *runtime.MemStats) float64 { return float64(m.MCacheInuse) }},
	{"go_memstats_mcache_sys_bytes", "Bytes of memory obtained from the OS for mcache structures (MCacheSys).", KindGauge, func(m *runtime.MemStats) float64 { return float64(m.MCacheSys) }},
	{"go_memstats_mspan_inuse_bytes", "Bytes of allocated mspan structures (MSpanInuse).", KindGauge, func(m *runtime.MemStats) float64 { return float64(m.MSpanInuse) }},
	{"go_memstats_mspan_sys_bytes", "Bytes of memory obtained from the OS for mspan structures (MSpanSys).", KindGauge, func(m *runtime.MemStats) float64 { return float64(m.MSpanSys) }},
	{"go_memstats_next_gc_bytes", "The heap size at which the next garbage collection starts (NextGC).", KindGauge, func(m *runtime.MemStats) float64 { return float64(m.NextGC) }},
	{"go_memstats_other_sys_bytes", "Bytes of memory in other runtime allocations (OtherSys).", KindGauge, func(m *runtime.MemStats) float64 { return float64(m.OtherSys) }},
	{"go_memstats_stack_inuse_bytes", "Bytes in stack spans (StackInuse).", KindGauge, func(m *runtime.MemStats) float64 { return float64(m.StackInuse) }},
	{"go_memstats_stack_sys_bytes", "Bytes of stack memory obtained from the OS (StackSys).", KindGauge, func(m *runtime.MemStats) float64 { return float64(m.StackSys) }},
	{"go_memstats_sys_bytes", "Bytes of memory obtained from the OS, all uses together (Sys).", KindGauge, func(m *runtime.MemStats) float64 { return float64(m.Sys) }},
}

// gcPauseQuantiles are the quantiles of go_gc_duration_seconds.
var gcPauseQuantiles = []string{"0", "0.25", "0.5", "0.75", "1"}

// writeGo writes the go_* families.
func writeGo(w *writer) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	for _, m := range memStats {
		w.family(m.name, m.help, m.kind)
		w.sample(m.name, "", nil, nil, "", "", m.value(&ms))
	}

	gc := debug.GCStats{PauseQuantiles: make([]time.Duration, len(gcPauseQuantiles))}
	debug.ReadGCStats(&gc)
	w.family("go_gc_duration_seconds", "Stop-the-world pauses of garbage collection, in seconds: their minimum, quartiles and maximum.", "summary")
	for i, q := range gcPauseQuantiles {
		w.sample("go_gc_duration_seconds", "", nil, nil, "quantile", q, gc.PauseQuantiles[i].Seconds())
	}
	w.sample("go_gc_duration_seconds", "_sum", nil, nil, "", "", gc.PauseTotal.Seconds())
	w.sample("go_gc_duration_seconds", "_count", nil, nil, "", "", float64(gc.NumGC))

	gogc := []rtmetrics.Sample{{Name: "/gc/gogc:percent"}}
	rtmetrics.Read(gogc)
	if gogc[0].Value.Kind() == rtmetrics.KindUint64 {
		gauge(w, "go_gc_gogc_percent", "The heap growth that starts a garbage collection, in percent (GOGC, or debug.SetGCPercent).", float64(gogc[0].Value.Uint64()))
	}
	gauge(w, "go_gc_gomemlimit_bytes", "The soft memory limit of the runtime, in bytes (GOMEMLIMIT, or debug.SetMemoryLimit).", float64(debug.SetMemoryLimit(-1)))
	gauge(w, "go_goroutines", "Goroutines that exist now.", float64(runtime.NumGoroutine()))
	w.family("go_info", "Always 1: the Go release that built the program.", KindGauge)
	w.sample("go_info", "", []string{"version"}, []string{runtime.Version()}, "", "", 1)
	gauge(w, "go_sched_gomaxprocs_threads", "GOMAXPROCS: the threads that may run Go code at once.", float64(runtime.GOMAXPROCS(0)))
	threads, _ := runtime.ThreadCreateProfile(nil)
	gauge(w, "go_threads", "Operating system threads created by the runtime.", float64(threads))
}

// gauge writes a family of one gauge without labels.
func gauge(w *writer, name, help string, v float64) {
	w.family(name, help, KindGauge)
	w.sample(name, "", nil, nil, "", "", v)
}
