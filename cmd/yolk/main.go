// Command yolk is all of yolk's commands in one binary, chosen by the name it runs
// under (a link named master, agent, worker or source) or by its first argument:
// `yolk worker healthcheck`. The container image ships it once, which keeps the
// image small: master and source would otherwise each carry a nats-server.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/yolkgo/yolk/internal/command/agent"
	"github.com/yolkgo/yolk/internal/command/master"
	"github.com/yolkgo/yolk/internal/command/source"
	"github.com/yolkgo/yolk/internal/command/worker"
)

var commands = map[string]func(){
	"master": master.Main,
	"agent":  agent.Main,
	"worker": worker.Main,
	"source": source.Main,
}

func main() {
	if run, ok := commands[filepath.Base(os.Args[0])]; ok {
		run()
		return
	}
	if len(os.Args) > 1 {
		if run, ok := commands[os.Args[1]]; ok {
			os.Args = append([]string{os.Args[1]}, os.Args[2:]...)
			run()
			return
		}
	}
	fmt.Fprintln(os.Stderr, "usage: yolk master|agent|worker|source [args] (or run it as a link with one of those names)")
	os.Exit(2)
}
