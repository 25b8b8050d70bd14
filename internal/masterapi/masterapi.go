// Package masterapi is what the agent and the workers say to their master on
// the bus, and what it says back: the event names, their payloads, and the
// rules the master applies to a report. The child runtime (package yolk) and
// the master (internal/command/master) both use it, so that the two sides of
// the conversation cannot drift apart.
package masterapi

import (
	"fmt"
	"strings"
	"time"
)

// The events between a child and its master.
const (
	EventReady        = "ready"      // child to master, a request: I am ready (reply: ReadyReply)
	EventState        = "state"      // child to master: what I serve now (State)
	EventServiceReady = "yolk-ready" // master to all: every process is ready
	EventPing         = "ping"       // master to a child, a request: are you there (reply: Heartbeat)
	EventMetrics      = "metrics"    // master to a child, a request: your metrics (reply: a string, the Prometheus text exposition)
)

// Heartbeat is a child's answer to EventPing: that it is there, and what it
// uses. The master shows it on its status page and watches it.
type Heartbeat struct {
	RSS        uint64            `json:"rss"`            // resident memory, bytes
	CPU        float64           `json:"cpu"`            // CPU time used so far, seconds
	Goroutines int               `json:"goroutines"`     //
	Sent       map[string]uint64 `json:"sent,omitempty"` // messenger calls so far, by verb (bus.Conn.Sent)
	// Stalled, when not empty, says why the process calls itself stuck: a
	// worker whose HTTP requests in flight made no progress (none completed,
	// wrote or flushed) for YOLK_HANG_TIMEOUT. The master replaces it.
	Stalled string `json:"stalled,omitempty"`
	// The agent's schedules: when each fired last and fires next.
	Schedules []Planned `json:"schedules,omitempty"`
	// A worker's last run of each schedule it ran.
	Runs []RunResult `json:"runs,omitempty"`
}

// Planned is a schedule as the agent's timers see it (schedule.Planned).
type Planned struct {
	Name  string    `json:"name"`
	Type  string    `json:"type"`
	Every string    `json:"every"` // the interval, or the cron expression
	Seq   uint64    `json:"seq"`   // of the last firing, 0 before the first
	Last  time.Time `json:"last,omitzero"`
	Next  time.Time `json:"next,omitzero"`
}

// RunResult is how a worker's last run of a schedule went (schedule.Result).
type RunResult struct {
	Name    string    `json:"name"`
	Seq     uint64    `json:"seq"`
	Started time.Time `json:"started"`
	TookMs  float64   `json:"tookMs"`
	Outcome string    `json:"outcome"` // running, ok, error, timeout, canceled
	Err     string    `json:"err,omitempty"`
}

// ReadyReply is the master's answer to EventReady.
type ReadyReply struct {
	// ServiceReady: every process was ready before this one (a restarted
	// worker): the child runs its service-ready hooks at once.
	ServiceReady bool `json:"serviceReady"`
}

// State is what a child reports it serves, for `master status`.
type State struct {
	Version   string    `json:"version"`
	By        string    `json:"by"`
	UpdatedAt time.Time `json:"updatedAt"`
	Fleet     string    `json:"fleet,omitempty"`
	// Fetches counts the process's reads of the remote source so far: the
	// master's timeline shows the fetches each change cost.
	Fetches uint64 `json:"fetches,omitempty"`
}

// Check refuses a report that `master status` could not show as it is: a
// version of 1 to 256 printable ASCII characters without spaces, and a cause
// (start, push, pull, ...) and a part in the fleet (leader, follower,
// alone), each of at most 32 lowercase letters. A report is input
// from another process: no control character may reach a terminal.
func (s State) Check() error {
	if len(s.Version) == 0 || len(s.Version) > 256 || strings.ContainsFunc(s.Version, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		return fmt.Errorf("version %.40q: want 1 to 256 printable ASCII characters, no space", s.Version)
	}
	if len(s.By) > 32 || strings.ContainsFunc(s.By, func(r rune) bool { return r < 'a' || r > 'z' }) {
		return fmt.Errorf("by %.40q: want at most 32 lowercase letters", s.By)
	}
	if len(s.Fleet) > 32 || strings.ContainsFunc(s.Fleet, func(r rune) bool { return r < 'a' || r > 'z' }) {
		return fmt.Errorf("fleet %.40q: want at most 32 lowercase letters", s.Fleet)
	}
	return nil
}
