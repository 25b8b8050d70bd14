// Command master is the cache application's master: it serves the bus and
// supervises the agent and worker binaries YOLK_AGENT_BIN and YOLK_WORKER_BIN
// name (by default agent and worker beside it), any built with package yolk.
// It checks the cache application's config before it starts anything.
package main

import (
	"github.com/yolkgo/yolk"
	"github.com/yolkgo/yolk/cacheapp"
)

func main() { yolk.MainMaster(cacheapp.New()) }
