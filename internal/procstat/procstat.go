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
	RSS     uint64        // resident set size, in bytes
	CPU     time.Duration // user and system time used so far
	Virtual uint64        // virtual memory size, in bytes
	Started time.Duration // when it started, after the system booted
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
	// rest[0] is field 3 (state): field n of proc(5) is rest[n-3].
	if len(rest) < 21 {
		return u, errors.New("/proc/" + pid + "/stat: too few fields")
	}
	var n [4]uint64 // utime, stime (14, 15), starttime, vsize (22, 23)
	for j, field := range [...]int{14, 15, 22, 23} {
		if n[j], err = strconv.ParseUint(string(rest[field-3]), 10, 64); err != nil {
			return u, fmt.Errorf("/proc/%s/stat: %w", pid, err)
		}
	}
	u.CPU = time.Duration(n[0]+n[1]) * clockTick
	u.Started = time.Duration(n[2]) * clockTick
	u.Virtual = n[3]
	return u, nil
}
