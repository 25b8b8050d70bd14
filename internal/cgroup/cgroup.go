// Package cgroup reads the memory limit Linux puts on this process's control
// group: a container's memory limit. It knows nothing of yolk's processes.
package cgroup

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// unlimited: cgroup v1 writes "no limit" as the largest page-aligned int64.
const unlimited = 1 << 60

// MemoryLimit returns the memory limit of this process's cgroup, in bytes,
// and false when there is none: no cgroup file readable, cgroup v2's "max", or
// cgroup v1's huge "no limit".
func MemoryLimit() (uint64, bool) {
	return memoryLimit("/sys/fs/cgroup", "/proc/self/cgroup")
}

// memoryLimit reads it under root, the cgroup filesystem's mount point, for
// the process whose /proc/<pid>/cgroup is self. It tries the process's own
// cgroup, then root itself (a container with a cgroup namespace sees its own
// cgroup there): cgroup v2's memory.max, else v1's memory.limit_in_bytes.
func memoryLimit(root, self string) (uint64, bool) {
	var v2, v1 string // the process's cgroup paths
	if b, err := os.ReadFile(self); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			// hierarchy-ID:controller-list:cgroup-path
			f := strings.SplitN(sc.Text(), ":", 3)
			if len(f) != 3 {
				continue
			}
			switch {
			case f[0] == "0" && f[1] == "":
				v2 = f[2]
			case strings.Contains(","+f[1]+",", ",memory,"):
				v1 = f[2]
			}
		}
	}
	candidates := []string{
		filepath.Join(root, v2, "memory.max"),
		filepath.Join(root, "memory.max"),
		filepath.Join(root, "memory", v1, "memory.limit_in_bytes"),
		filepath.Join(root, "memory", "memory.limit_in_bytes"),
	}
	for _, path := range candidates {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0, false
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 || n >= unlimited {
			return 0, false
		}
		return n, true
	}
	return 0, false
}
