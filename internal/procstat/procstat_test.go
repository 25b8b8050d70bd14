package procstat

import (
	"os"
	"testing"
	"time"
)

func TestSelfGrowsWithWork(t *testing.T) {
	before, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	if before.RSS < 1<<20 {
		t.Fatalf("RSS %d: a Go test binary holds more than 1 MiB", before.RSS)
	}
	if before.Virtual < before.RSS || before.Started <= 0 {
		t.Fatalf("virtual memory %d below the RSS %d, or started %v after boot", before.Virtual, before.RSS, before.Started)
	}
	// Burn CPU until the kernel's counter moves (it counts in 10 ms ticks).
	deadline := time.Now().Add(5 * time.Second)
	x := 0
	for time.Now().Before(deadline) {
		for i := range 1_000_000 {
			x += i
		}
		after, err := Self()
		if err != nil {
			t.Fatal(err)
		}
		if after.CPU > before.CPU {
			return
		}
	}
	t.Fatalf("CPU time did not grow in 5 s of work (%d)", x)
}

func TestOfMissingProcess(t *testing.T) {
	if _, err := Of(1 << 30); !os.IsNotExist(err) {
		t.Fatalf("Of(no such pid) = %v, want not exist", err)
	}
}
