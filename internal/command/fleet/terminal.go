package fleet

import (
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// takeTerminal makes this process the leader of a process group of its own and
// that group the terminal's foreground, when it runs in the terminal's foreground
// (under make, typically). A Ctrl-C then reaches this process alone: not make,
// which would otherwise die of it whatever the recipe did and report a failure,
// and not the children, each in a group of its own, which this process stops in
// order. The returned function gives the terminal back to the group it came from.
// Without a terminal it does nothing.
func takeTerminal() (restore func()) {
	const fd = 0 // stdin
	if _, err := unix.IoctlGetTermios(fd, unix.TCGETS); err != nil {
		return func() {}
	}
	fg, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP)
	if err != nil || fg != syscall.Getpgrp() {
		return func() {} // in the background: leave the terminal alone
	}
	if err := syscall.Setpgid(0, 0); err != nil {
		return func() {}
	}
	// A process outside the foreground group that changes the foreground gets
	// SIGTTOU, unless it ignores it.
	signal.Ignore(syscall.SIGTTOU)
	defer signal.Reset(syscall.SIGTTOU) // the children must not inherit the SIG_IGN
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPGRP, syscall.Getpid()); err != nil {
		syscall.Setpgid(0, fg)
		return func() {}
	}
	return func() {
		signal.Ignore(syscall.SIGTTOU)
		unix.IoctlSetPointerInt(fd, unix.TIOCSPGRP, fg)
		signal.Reset(syscall.SIGTTOU)
	}
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
