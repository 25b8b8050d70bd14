// Command source is yolk's source; the code is in internal/command/source.
package main

import "github.com/yolkgo/yolk/internal/command/source"

func main() { source.Main() }
