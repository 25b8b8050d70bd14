package lifeline

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

func TestLifelineInvalid(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "regular"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tests := []struct {
		name    string
		environ []string
	}{
		{"unset", []string{"HOME=/"}},
		{"empty", []string{EnvFD + "="}},
		{"not a number", []string{EnvFD + "=three"}},
		{"stdio", []string{EnvFD + "=2"}},
		{"not open", []string{EnvFD + "=100000"}},
		{"not a pipe", []string{EnvFD + "=" + strconv.Itoa(int(f.Fd()))}},
	}
	for _, tt := range tests {
		if got := Watch(tt.environ); got != nil {
			t.Errorf("Watch(%s: %q) = a channel, want nil", tt.name, tt.environ)
		}
	}
}

func TestLifelineEOF(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Dup(int(r.Fd())) // Lifeline takes the fd over for good
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	env := []string{EnvFD + "=" + strconv.Itoa(fd)}
	ch := Watch(env)
	if ch == nil {
		t.Fatalf("Watch(%q) = nil", env)
	}
	if again := Watch(env); again != ch {
		t.Errorf("a second Watch(%q) returned another channel", env)
	}
	select {
	case <-ch:
		t.Fatal("lifeline closed while the write end is open")
	default:
	}
	w.Close()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("lifeline still open after the write end was closed")
	}
}
