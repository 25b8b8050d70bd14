// Command fleet runs yolk's fleet on one machine in the foreground (make
// fleet); the code is in internal/command/fleet.
package main

import (
	"os"

	"github.com/yolkgo/yolk/internal/command/fleet"
)

func main() { fleet.Main(os.Args[1:]) }
