// Package lifeline is the child's end of the supervisor's lifeline pipe: it
// tells a process that its master is gone, even when the master died by
// SIGKILL. The supervisor package holds the parent's end.
package lifeline

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// EnvFD names the lifeline's fd in a child's environment: the supervisor
// package sets it (supervisor.EnvLifelineFD), which cannot be imported here:
// its tests run their children through this package.
const EnvFD = "YOLK_LIFELINE_FD"

var (
	lifelineMu sync.Mutex
	lifelines  = map[int]lifeline{} // by fd: one reader per fd for the process's life
)

type lifeline struct {
	f    *os.File // kept so that no finalizer closes the fd
	done chan struct{}
}

// Watch returns a channel that is closed when the
// lifeline pipe named by YOLK_LIFELINE_FD in environ reaches EOF or fails,
// which happens when the master has died (even by SIGKILL) or its Run has
// returned. A child should then stop: its master is gone. It returns a nil
// channel (which blocks for ever in a select) when the variable is unset or
// does not name an open pipe.
//
// The first call for an fd takes it over (marked close-on-exec, never
// closed) and starts one goroutine that reads it for the rest of the
// process's life; later calls return the same channel. Safe for concurrent use.
func Watch(environ []string) <-chan struct{} {
	fd, ok := lifelineFD(environ)
	if !ok {
		return nil
	}
	lifelineMu.Lock()
	defer lifelineMu.Unlock()
	if l, ok := lifelines[fd]; ok {
		return l.done
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
		return nil
	}
	syscall.CloseOnExec(fd)
	l := lifeline{f: os.NewFile(uintptr(fd), "yolk-lifeline"), done: make(chan struct{})}
	lifelines[fd] = l
	go func() { // ends at EOF: the process's lifetime, no other owner
		defer close(l.done)
		buf := make([]byte, 64)
		for {
			if _, err := l.f.Read(buf); err != nil {
				return
			}
		}
	}()
	return l.done
}

func lifelineFD(environ []string) (int, bool) {
	v := ""
	for _, kv := range environ {
		if val, ok := strings.CutPrefix(kv, EnvFD+"="); ok {
			v = val // the last one wins, as in exec
		}
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return 0, false
	}
	return fd, true
}
