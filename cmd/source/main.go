// Command source is the example's remote data source; the code is in internal/command/source.
package main

import (
	"os"

	"github.com/yolkgo/yolk/internal/command/source"
)

func main() { source.Main(os.Args[1:]) }
