package metrics

import (
	"runtime"
	"runtime/debug"

	"github.com/yolkgo/yolk/prom"
)

// NewRegistry returns a process's registry: the Go runtime's series (go_*),
// the process's (process_*) and yolk_build_info{version,goversion}. version
// is the build's stamped version (make build sets it with -ldflags -X); ""
// or "dev" takes the main module's version from the binary's build
// information, and a build with none ("(devel)": go build in the module, or
// go run) is "dev".
func NewRegistry(version string) *prom.Registry {
	reg := prom.NewRegistry()
	reg.RegisterRuntime()
	reg.GaugeVec("yolk_build_info", "Always 1: the version of the program and the Go release that built it.",
		"goversion", "version").With(runtime.Version(), buildVersion(version)).Set(1)
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
