package fleetrig

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
)

// natsServer is the real nats-server, built by TestMain from the module in go.mod.
var natsServer string

func TestMain(m *testing.M) {
	// As a child of a Process test: the scenario named by FLEETRIG_CHILD.
	switch os.Getenv("FLEETRIG_CHILD") {
	case "":
	case "ignore-sigterm":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ignoring SIGTERM")
		select {}
	case "print":
		fmt.Print("line one\nline two\nno newline")
		os.Exit(3)
	default:
		fmt.Fprintln(os.Stderr, "unknown FLEETRIG_CHILD")
		os.Exit(2)
	}
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "fleetrig-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleetrig:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	natsServer = filepath.Join(dir, "nats-server")
	cmd := exec.Command("go", "build", "-o", natsServer, "github.com/nats-io/nats-server/v2")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "fleetrig: build nats-server:", err)
		return 1
	}
	return m.Run()
}
