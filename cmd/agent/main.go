// Command agent is yolk's agent; the code is in internal/command/agent.
package main

import "github.com/yolkgo/yolk/internal/command/agent"

func main() { agent.Main() }
