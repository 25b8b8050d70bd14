package fleetrig

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

func TestLogWritesWholeLinesWithTheirName(t *testing.T) {
	var buf bytes.Buffer
	l := NewLog(&buf)
	a, bb := l.Writer("a"), l.Writer("long")
	a.Write([]byte("one\ntw"))
	bb.Write([]byte("x\n"))
	a.Write([]byte("o\nthree"))
	a.Close()
	l.Printf("a", "n=%d", 4)
	want := "a    | one\nlong | x\na    | two\na    | three\na    | n=4\n"
	if got := buf.String(); got != want {
		t.Errorf("log =\n%s\nwant\n%s", got, want)
	}
}

// TestLogIsSafeForConcurrentUse: run with -race; every line arrives whole, with
// its name.
func TestLogIsSafeForConcurrentUse(t *testing.T) {
	var buf bytes.Buffer
	l := NewLog(&buf)
	var wg sync.WaitGroup
	for _, name := range []string{"p", "q"} {
		w := l.Writer(name)
		for range 2 { // stdout and stderr of one process
			wg.Go(func() {
				for range 100 {
					w.Write([]byte(name + " says hello\n"))
				}
			})
		}
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 400 {
		t.Fatalf("%d lines, want 400", len(lines))
	}
	for _, line := range lines {
		if line != "p | p says hello" && line != "q | q says hello" {
			t.Errorf("line %q: not whole, or not with its name", line)
		}
	}
}
