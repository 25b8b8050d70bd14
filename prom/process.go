package prom

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
)

var processNames = []string{
	"process_cpu_seconds_total", "process_max_fds", "process_network_receive_bytes_total",
	"process_network_transmit_bytes_total", "process_open_fds", "process_resident_memory_bytes",
	"process_start_time_seconds", "process_virtual_memory_bytes", "process_virtual_memory_max_bytes",
}

// userHZ is the unit of the times in /proc/self/stat: clock ticks of 1/100 s
// (USER_HZ, fixed for programs on Linux).
const userHZ = 100

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
	stat, statOK := readStat()
	if statOK {
		counter(w, "process_cpu_seconds_total", "CPU time of the process, user and system, in seconds.", (stat.utime+stat.stime)/userHZ)
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
		gauge(w, "process_resident_memory_bytes", "Resident memory of the process, in bytes.", stat.rss*float64(os.Getpagesize()))
		if p.bootTime > 0 {
			gauge(w, "process_start_time_seconds", "When the process started, in seconds since the epoch.", p.bootTime+stat.start/userHZ)
		}
		gauge(w, "process_virtual_memory_bytes", "Virtual memory of the process, in bytes.", stat.vsize)
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

// stat is what the process_* series take from /proc/self/stat.
type stat struct {
	utime, stime, start float64 // clock ticks
	vsize               float64 // bytes
	rss                 float64 // pages
}

// readStat reads /proc/self/stat (proc(5)): after the command in brackets,
// which may hold spaces, the fields from the third (state) on.
func readStat() (stat, bool) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return stat{}, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 22 {
		return stat{}, false
	}
	num := func(field int) float64 { // field as proc(5) numbers them, from 1
		v, _ := strconv.ParseFloat(f[field-3], 64)
		return v
	}
	return stat{utime: num(14), stime: num(15), start: num(22), vsize: num(23), rss: num(24)}, true
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
