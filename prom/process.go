package prom

import (
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/yolkgo/yolk/internal/procstat"
)

var processNames = []string{
	"process_cpu_seconds_total", "process_max_fds", "process_network_receive_bytes_total",
	"process_network_transmit_bytes_total", "process_open_fds", "process_resident_memory_bytes",
	"process_start_time_seconds", "process_virtual_memory_bytes", "process_virtual_memory_max_bytes",
}

// procStats reads the process_* series from /proc. What cannot be read (on
// a system without /proc) is left out.
type procStats struct {
	bootTime float64 // seconds since the epoch; 0 if unknown
}

func newProcStats() *procStats {
	p := new(procStats)
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "btime "); ok {
				p.bootTime, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
			}
		}
	}
	return p
}

// write writes the process_* families.
func (p *procStats) write(w *writer) {
	u, err := procstat.Self()
	statOK := err == nil
	if statOK {
		counter(w, "process_cpu_seconds_total", "CPU time of the process, user and system, in seconds.", u.CPU.Seconds())
	}
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		gauge(w, "process_max_fds", "The limit of open file descriptors (RLIMIT_NOFILE).", float64(lim.Cur))
	}
	if in, out, ok := readNetstat(); ok {
		counter(w, "process_network_receive_bytes_total", "Bytes received over the network by the process's network namespace (IpExt InOctets).", in)
		counter(w, "process_network_transmit_bytes_total", "Bytes sent over the network by the process's network namespace (IpExt OutOctets).", out)
	}
	if fds, err := openFDs(); err == nil {
		gauge(w, "process_open_fds", "Open file descriptors.", float64(fds))
	}
	if statOK {
		gauge(w, "process_resident_memory_bytes", "Resident memory of the process, in bytes.", float64(u.RSS))
		if p.bootTime > 0 {
			gauge(w, "process_start_time_seconds", "When the process started, in seconds since the epoch.", p.bootTime+u.Started.Seconds())
		}
		gauge(w, "process_virtual_memory_bytes", "Virtual memory of the process, in bytes.", float64(u.Virtual))
	}
	if syscall.Getrlimit(syscall.RLIMIT_AS, &lim) == nil {
		gauge(w, "process_virtual_memory_max_bytes", "The limit of virtual memory, in bytes (RLIMIT_AS).", float64(lim.Cur))
	}
}

// counter writes a family of one counter without labels.
func counter(w *writer, name, help string, v float64) {
	w.family(name, help, KindCounter)
	w.sample(name, "", nil, nil, "", "", v)
}

// readNetstat reads the bytes received and sent from the IpExt lines of
// /proc/self/net/netstat: a line of names, then a line of values.
func readNetstat() (in, out float64, ok bool) {
	b, err := os.ReadFile("/proc/self/net/netstat")
	if err != nil {
		return 0, 0, false
	}
	var names []string
	for line := range strings.Lines(string(b)) {
		rest, isIP := strings.CutPrefix(line, "IpExt:")
		if !isIP {
			continue
		}
		if names == nil {
			names = strings.Fields(rest)
			continue
		}
		var gotIn, gotOut bool
		for i, v := range strings.Fields(rest) {
			if i >= len(names) {
				break
			}
			switch names[i] {
			case "InOctets":
				in, _ = strconv.ParseFloat(v, 64)
				gotIn = true
			case "OutOctets":
				out, _ = strconv.ParseFloat(v, 64)
				gotOut = true
			}
		}
		return in, out, gotIn && gotOut
	}
	return 0, 0, false
}

// openFDs counts the entries of /proc/self/fd.
func openFDs() (int, error) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	return len(names), err // with the one open to read it
}
