package master

import (
	"github.com/yolkgo/yolk/internal/cgroup"
	"github.com/yolkgo/yolk/internal/cli"
)

// workerMemLimit is the GOMEMLIMIT each worker gets in fork mode: its share of
// the container's memory limit, that is 90% of the limit split in workers+1
// equal shares, one per worker and one for the master and the agent
// together. It is 0 (set none) when there is no limit, or when the master's
// environment sets GOMEMLIMIT: that is the user's, and every child inherits it.
func workerMemLimit(environ []string, workers int, limit func() (uint64, bool)) uint64 {
	if cli.Getenv(environ, "GOMEMLIMIT") != "" || workers < 1 {
		return 0
	}
	l, ok := limit()
	if !ok {
		return 0
	}
	return l / 10 * 9 / uint64(workers+1)
}

// containerMemory is the container's memory limit, if any.
func containerMemory() (uint64, bool) { return cgroup.MemoryLimit() }
