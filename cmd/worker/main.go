// Command worker is yolk's worker; the code is in internal/command/worker.
package main

import "github.com/yolkgo/yolk/internal/command/worker"

func main() { worker.Main() }
