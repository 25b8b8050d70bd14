// Command agent is the cache application's agent, for a master that starts
// separate binaries (cmd/master). The application is package cacheapp.
package main

import (
	"github.com/yolkgo/yolk"
	"github.com/yolkgo/yolk/cacheapp"
)

func main() { yolk.MainAgent(cacheapp.New()) }
