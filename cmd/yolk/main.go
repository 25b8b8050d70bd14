// Command yolk is the cache application in one binary, and the example's
// source too. Run plainly it is the master, which starts itself again as the
// agent and the workers (see yolk.Main). Run as a link named master, agent,
// worker or source, or with one of those as its first argument (`yolk worker
// healthcheck`), it plays that part: the container image ships it once, which
// keeps the image small.
package main

import (
	"os"
	"path/filepath"

	"github.com/yolkgo/yolk"
	"github.com/yolkgo/yolk/cacheapp"
	"github.com/yolkgo/yolk/internal/command/source"
)

func main() {
	name := filepath.Base(os.Args[0])
	if name == "source" {
		source.Main(os.Args[1:])
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "source" {
		source.Main(os.Args[2:])
		return
	}
	app := cacheapp.New()
	switch name {
	case "master":
		yolk.MainMaster(app)
	case "agent":
		yolk.MainAgent(app)
	case "worker":
		yolk.MainWorker(app)
	default:
		yolk.Main(app)
	}
}
