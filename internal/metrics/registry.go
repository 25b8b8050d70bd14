package metrics

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// NewRegistry returns a process's registry: the Go runtime's series (go_*),
// the process's (process_*) and yolk_build_info{version,goversion}. version
// is the build's stamped version (make build sets it with -ldflags -X); ""
// or "dev" takes the main module's version from the binary's build
// information, and a build with none ("(devel)": go build in the module, or
// go run) is "dev".
func NewRegistry(version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "yolk_build_info",
		Help:        "Always 1: the version of the program and the Go release that built it.",
		ConstLabels: prometheus.Labels{"version": buildVersion(version), "goversion": runtime.Version()},
	})
	info.Set(1)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), info)
	return reg
}

func buildVersion(stamped string) string {
	if stamped != "" && stamped != "dev" {
		return stamped
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
