package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// bench -cpustat FILE: every fan-out sender appends to FILE, for each run, the
// CPU time and the system calls per message of the server, the sender and the
// receivers, counted inside the run only (from the begin message to the last
// ack). It tells where a system spends its time per message, which the
// throughput alone does not.
const (
	envCPUStat   = "BENCH_CPUSTAT"
	envServerPID = "BENCH_SERVER_PID" // the raw NATS publisher's server; a yolk agent's is its parent, the master
)

// usage is what a process has used so far: CPU time (every thread's, from
// /proc/PID/task/*/schedstat, in ns), read and write system calls and the
// bytes they moved (/proc/PID/io).
type usage struct {
	CPU        time.Duration `json:"cpuNs"`
	Reads      uint64        `json:"reads"`
	Writes     uint64        `json:"writes"`
	ReadBytes  uint64        `json:"readBytes"`
	WroteBytes uint64        `json:"wroteBytes"`
}

func (u usage) minus(v usage) usage {
	return usage{CPU: u.CPU - v.CPU, Reads: u.Reads - v.Reads, Writes: u.Writes - v.Writes,
		ReadBytes: u.ReadBytes - v.ReadBytes, WroteBytes: u.WroteBytes - v.WroteBytes}
}

func (u usage) plus(v usage) usage {
	return usage{CPU: u.CPU + v.CPU, Reads: u.Reads + v.Reads, Writes: u.Writes + v.Writes,
		ReadBytes: u.ReadBytes + v.ReadBytes, WroteBytes: u.WroteBytes + v.WroteBytes}
}

// usageOf reads pid's usage; zero if it cannot (a missing file is no error:
// the counts are an aid, not a measure the bench depends on).
func usageOf(pid int) usage {
	var u usage
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			u.CPU += time.Duration(ns)
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return u
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, value, _ := strings.Cut(sc.Text(), ": ")
		n, _ := strconv.ParseUint(value, 10, 64)
		switch name {
		case "syscr":
			u.Reads = n
		case "syscw":
			u.Writes = n
		case "rchar":
			u.ReadBytes = n
		case "wchar":
			u.WroteBytes = n
		}
	}
	return u
}

// cpuStat measures one fan-out run from the sender's side.
type cpuStat struct {
	file           string
	server         int
	server0, self0 usage
}

// startCPUStat begins a run's count, or returns nil without -cpustat.
func startCPUStat() *cpuStat {
	file := os.Getenv(envCPUStat)
	if file == "" {
		return nil
	}
	server := os.Getppid()
	if s, err := strconv.Atoi(os.Getenv(envServerPID)); err == nil {
		server = s
	}
	return &cpuStat{file: file, server: server, server0: usageOf(server), self0: usageOf(os.Getpid())}
}

// cpuStatLine is one run's counts per message in the -cpustat file.
type cpuStatLine struct {
	Sender    string  `json:"sender"` // yolk's agent, or raw NATS's publisher
	Size      int     `json:"size"`
	N         int     `json:"n"`
	Workers   int     `json:"workers"`
	Server    perMsg  `json:"server"`
	Self      perMsg  `json:"sender_"`
	Receivers perMsg  `json:"receivers"` // all of them together
	Total     float64 `json:"totalCpuNsPerMsg"`
}

type perMsg struct {
	CPU        float64 `json:"cpuNs"`
	Reads      float64 `json:"reads"`
	Writes     float64 `json:"writes"`
	ReadBytes  float64 `json:"readBytes"`
	WroteBytes float64 `json:"wroteBytes"`
}

func per(u usage, n int) perMsg {
	f := float64(n)
	return perMsg{CPU: float64(u.CPU) / f, Reads: float64(u.Reads) / f, Writes: float64(u.Writes) / f,
		ReadBytes: float64(u.ReadBytes) / f, WroteBytes: float64(u.WroteBytes) / f}
}

// finish appends the run's line, with the receivers' own counts from their acks.
func (s *cpuStat) finish(sender string, size, n int, acks []fanAck) {
	if s == nil {
		return
	}
	var recv usage
	for _, a := range acks {
		recv = recv.plus(a.Usage)
	}
	l := cpuStatLine{Sender: sender, Size: size, N: n, Workers: len(acks),
		Server: per(usageOf(s.server).minus(s.server0), n), Self: per(usageOf(os.Getpid()).minus(s.self0), n), Receivers: per(recv, n)}
	l.Total = l.Server.CPU + l.Self.CPU + l.Receivers.CPU
	b, _ := json.Marshal(l)
	f, err := os.OpenFile(s.file, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	f.Write(append(b, '\n'))
}
