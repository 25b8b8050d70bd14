// Command worker is the cache application's worker, for a master that starts
// separate binaries (cmd/master). The application is package cacheapp.
package main

import (
	"github.com/yolkgo/yolk"
	"github.com/yolkgo/yolk/cacheapp"
)

func main() { yolk.MainWorker(cacheapp.New()) }
