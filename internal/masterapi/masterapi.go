// Package masterapi is what the agent and the workers say to their master on
// the bus, and what it says back: the event names, their payloads, and the
// rules the master applies to a report. The child runtime (package yolk) and
// the master (internal/command/master) both use it, so that the two sides of
// the conversation cannot drift apart.
package masterapi

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
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
	Goroutines int               `json:"goroutines"`     // runtime.NumGoroutine
	Wire       int               `json:"wire,omitempty"` // the bus's wire version it sends (bus.Conn.Wire)
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

// Refused starts the error of the master's answer to EventReady when the
// child cannot be one of the service (it reads an older wire version than
// the others send): the child stops instead of reporting again.
const Refused = "refused: "

// Ready is what a child says with EventReady. A child of a yolk before wire
// versions says nothing (null): it reads wire version 1 only.
type Ready struct {
	// Wire is the newest wire version of the bus this child reads (bus.WireVersion).
	Wire int `json:"wire,omitempty"`
}

// ReadyReply is the master's answer to EventReady.
type ReadyReply struct {
	// ServiceReady: every process was ready before this one (a restarted
	// worker): the child runs its service-ready hooks at once.
	ServiceReady bool `json:"serviceReady"`
	// Wire is the wire version the child sends from now on (bus.Conn.SetWire):
	// the newest that every process of the service reads. Absent (a master
	// of a yolk before wire versions): 1.
	Wire int `json:"wire,omitempty"`
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

// Limits of a heartbeat, which [Heartbeat.Check] applies.
const (
	MaxSchedules = 64  // schedules in Schedules, and runs in Runs
	MaxVerbs     = 16  // verbs in Sent
	MaxErr       = 256 // bytes of a run's Err, and of Stalled, kept
)

// Outcomes are the values of RunResult.Outcome (schedule.Result's).
var Outcomes = []string{"running", "ok", "error", "timeout", "canceled"}

// Check refuses a heartbeat that the master could not store and stream as it
// is: at most MaxSchedules schedules and runs, each named by 1 to 64
// printable ASCII characters, an interval or cron expression of at most 64,
// a type of at most 32 lowercase letters, an outcome from Outcomes, and at
// most MaxVerbs verbs in Sent, each of 1 to 32 letters. It cuts a run's Err
// and Stalled to MaxErr bytes of valid UTF-8. A heartbeat is input from
// another process, like a State.
func (h *Heartbeat) Check() error {
	if len(h.Schedules) > MaxSchedules || len(h.Runs) > MaxSchedules {
		return fmt.Errorf("%d schedules, %d runs: want at most %d of each", len(h.Schedules), len(h.Runs), MaxSchedules)
	}
	if h.Wire < 0 || h.Wire > 255 {
		return fmt.Errorf("wire version %d: want 0 to 255", h.Wire)
	}
	if len(h.Sent) > MaxVerbs {
		return fmt.Errorf("%d verbs in sent: want at most %d", len(h.Sent), MaxVerbs)
	}
	for verb := range h.Sent {
		if len(verb) == 0 || len(verb) > 32 || strings.ContainsFunc(verb, func(r rune) bool { return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') }) {
			return fmt.Errorf("verb %.40q: want 1 to 32 letters", verb)
		}
	}
	for _, p := range h.Schedules {
		if err := checkName(p.Name); err != nil {
			return err
		}
		if len(p.Every) > 64 || strings.ContainsFunc(p.Every, notPrintable) {
			return fmt.Errorf("schedule %s: every %.40q: want at most 64 printable ASCII characters", p.Name, p.Every)
		}
		if len(p.Type) > 32 || strings.ContainsFunc(p.Type, func(r rune) bool { return r < 'a' || r > 'z' }) {
			return fmt.Errorf("schedule %s: type %.40q: want at most 32 lowercase letters", p.Name, p.Type)
		}
	}
	for i := range h.Runs {
		r := &h.Runs[i]
		if err := checkName(r.Name); err != nil {
			return err
		}
		if !slices.Contains(Outcomes, r.Outcome) {
			return fmt.Errorf("run of %s: outcome %.40q: want one of %s", r.Name, r.Outcome, strings.Join(Outcomes, ", "))
		}
		r.Err = cut(r.Err)
	}
	h.Stalled = cut(h.Stalled)
	return nil
}

func checkName(name string) error {
	if len(name) == 0 || len(name) > 64 || strings.ContainsFunc(name, notPrintable) {
		return fmt.Errorf("schedule name %.40q: want 1 to 64 printable ASCII characters", name)
	}
	return nil
}

func notPrintable(r rune) bool { return r < ' ' || r >= 0x7f }

// cut returns s as valid UTF-8 of at most MaxErr bytes.
func cut(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= MaxErr {
		return s
	}
	s = s[:MaxErr]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
