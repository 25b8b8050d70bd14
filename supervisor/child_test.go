package supervisor

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestLineWriter(t *testing.T) {
	c := &child{pid: 42, pidKnown: make(chan struct{})}
	close(c.pidKnown)
	var got []string
	w := &lineWriter{c: c, role: "worker", tail: &c.tail, out: func(role string, pid int, line []byte) {
		got = append(got, fmt.Sprintf("%s %d %s", role, pid, line))
	}}
	for _, p := range []string{"one\ntw", "o\r\n", "", "\nthree", strings.Repeat("x", maxLine+1)} {
		if n, err := w.Write([]byte(p)); n != len(p) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", p, n, err)
		}
	}
	w.flush()
	long := "three" + strings.Repeat("x", maxLine-5)
	want := []string{"worker 42 one", "worker 42 two", "worker 42 ", "worker 42 " + long, "worker 42 xxxxxx"}
	if !slices.Equal(got, want) {
		t.Errorf("lines = %.80q, want %.80q", got, want)
	}
	if tail := c.tail.lines(); len(tail) != 5 || tail[0] != "one" || tail[4] != "xxxxxx" {
		t.Errorf("tail = %.80q", tail)
	}
}

func TestChildError(t *testing.T) {
	err := &childError{pid: 7, what: "exited before ready", err: &exitStatus{"exit status 3"}, tail: []string{"a", "b"}}
	want := "pid 7 exited before ready: exit status 3; last stderr lines:\n\ta\n\tb"
	if got := err.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	short := &childError{pid: 7, what: "not ready within 1s"}
	if got := short.Error(); got != "pid 7 not ready within 1s" {
		t.Errorf("Error() = %q", got)
	}
}
