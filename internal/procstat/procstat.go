// Package procstat reads what Linux says about a process's resources: its
// resident memory and the CPU time it has used, from /proc.
package procstat

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Usage is a process's resident memory and CPU time at one moment.
type Usage struct {
	RSS uint64        // resident set size, in bytes
	CPU time.Duration // user and system time used so far
}

// clockTick is the unit of /proc/<pid>/stat's times: USER_HZ, 100 on every
// Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// Self is Of(os.Getpid()).
func Self() (Usage, error) { return read("self") }

// Of reads the usage of the process pid.
func Of(pid int) (Usage, error) { return read(strconv.Itoa(pid)) }

func read(pid string) (Usage, error) {
	var u Usage
	statm, err := os.ReadFile("/proc/" + pid + "/statm")
	if err != nil {
		return u, err
	}
	f := bytes.Fields(statm)
	if len(f) < 2 {
		return u, fmt.Errorf("/proc/%s/statm: %d fields", pid, len(f))
	}
	pages, err := strconv.ParseUint(string(f[1]), 10, 64)
	if err != nil {
		return u, fmt.Errorf("/proc/%s/statm: %w", pid, err)
	}
	u.RSS = pages * uint64(os.Getpagesize())

	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return u, err
	}
	// The command name, field 2, is in parentheses and may hold spaces and
	// parentheses itself: the fields that follow start after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return u, fmt.Errorf("/proc/%s/stat: no command name", pid)
	}
	rest := bytes.Fields(stat[i+1:])
	// rest[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(rest) < 13 {
		return u, errors.New("/proc/" + pid + "/stat: too few fields")
	}
	var ticks uint64
	for _, s := range rest[11:13] {
		n, err := strconv.ParseUint(string(s), 10, 64)
		if err != nil {
			return u, fmt.Errorf("/proc/%s/stat: %w", pid, err)
		}
		ticks += n
	}
	u.CPU = time.Duration(ticks) * clockTick
	return u, nil
}
