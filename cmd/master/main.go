// Command master is yolk's master; the code is in internal/command/master.
package main

import "github.com/yolkgo/yolk/internal/command/master"

func main() { master.Main() }
