package schedule

import (
	"errors"
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
)

// Type says which workers a run of a schedule goes to.
type Type int

const (
	// Worker runs each firing in one worker, chosen by the agent.
	Worker Type = iota + 1
	// All runs each firing in every worker.
	All
	// Cluster runs each firing once across a fleet of hosts (YOLK_CLUSTER_URL),
	// in one worker of the host whose agent holds the schedule's lease; its
	// Run carries the lease's fencing token. An Interval schedule's ticks are
	// then counted from the Unix epoch, so that every host's timers agree on
	// them. On a single host it runs as Worker.
	Cluster
)

// String returns "worker", "all" or "cluster", or "Type(n)" for any other value.
func (t Type) String() string {
	switch t {
	case Worker:
		return "worker"
	case All:
		return "all"
	case Cluster:
		return "cluster"
	}
	return fmt.Sprintf("Type(%d)", int(t))
}

// MarshalText encodes t as "worker", "all" or "cluster"; any other value is
// an error.
func (t Type) MarshalText() ([]byte, error) {
	if t != Worker && t != All && t != Cluster {
		return nil, fmt.Errorf("schedule: unknown type %d", int(t))
	}
	return []byte(t.String()), nil
}

// UnmarshalText decodes "worker", "all" or "cluster"; any other text is an
// error and leaves t unchanged.
func (t *Type) UnmarshalText(text []byte) error {
	switch string(text) {
	case "worker":
		*t = Worker
	case "all":
		*t = All
	case "cluster":
		*t = Cluster
	default:
		return fmt.Errorf("schedule: unknown type %q (want worker, all or cluster)", text)
	}
	return nil
}

// Limits that Validate enforces, and the defaults of RunTimeout.
const (
	// MaxNameLen is the longest schedule name Validate accepts.
	MaxNameLen = 64
	// MinInterval is the shortest Interval Validate accepts; a shorter one
	// is most likely a missing unit (Interval: 10 is 10ns).
	MinInterval = time.Millisecond
	// MaxInterval is the longest Interval, or "@every" delay, Validate
	// accepts; for rarer firings, use a cron expression with a date.
	MaxInterval = 365 * 24 * time.Hour
	// DefaultCronTimeout is the run timeout of a Cron schedule whose Timeout is 0.
	DefaultCronTimeout = time.Minute
	// MaxDefaultTimeout caps the run timeout taken from the Interval when
	// Timeout is 0. An explicit Timeout is not capped.
	MaxDefaultTimeout = 10 * time.Minute
)

// Spec describes one schedule. The application registers the same Spec in
// the agent ([NewScheduler]) and in each worker ([Runner.Handle]).
type Spec struct {
	// Name identifies the schedule; it is a single bus token: 1 to 64
	// characters from [A-Za-z0-9_-].
	Name string
	// Interval fires the schedule every Interval, counted from the start of
	// [Scheduler.Run]; it is between MinInterval and MaxInterval. Exactly one
	// of Interval and Cron is set.
	Interval time.Duration
	// Cron fires the schedule at the times of a cron expression with a
	// seconds field ("0 0 3 * * *" is 03:00:00 every day) or a descriptor
	// such as "@hourly" or "@every 90s", in the agent's local time zone
	// unless the text starts with "CRON_TZ=Area/City ".
	Cron string
	// Type says whether a run goes to one worker, to every worker, or to
	// one worker across a fleet.
	Type Type
	// Immediate also fires the schedule once when the Scheduler starts.
	Immediate bool
	// Disable registers the schedule but never fires it; a Runner refuses
	// to dispatch its runs.
	Disable bool
	// Timeout is the deadline of one run in a worker. Zero means the
	// Interval, capped at 10 minutes, or 1 minute for a Cron schedule.
	Timeout time.Duration
}

// cronParser accepts a seconds field and descriptors (@daily, @every 5m).
var cronParser = cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Validate reports every problem with s, each naming the schedule, for
// example `schedule "pull_refresh": interval and cron are both set`. It
// returns nil for a valid Spec.
func (s Spec) Validate() error {
	_, err := s.parse()
	return err
}

// RunTimeout returns the deadline of one run in a worker: Timeout when it is
// set, otherwise the Interval capped at 10 minutes, or 1 minute for a Cron
// schedule.
func (s Spec) RunTimeout() time.Duration {
	switch {
	case s.Timeout > 0:
		return s.Timeout
	case s.Interval > 0:
		return min(s.Interval, MaxDefaultTimeout)
	}
	return DefaultCronTimeout
}

// parse validates s and returns its parsed cron schedule, nil for an
// Interval schedule.
func (s Spec) parse() (cron.Schedule, error) {
	var problems []error
	bad := func(format string, args ...any) {
		problems = append(problems, fmt.Errorf("schedule %q: "+format, append([]any{s.Name}, args...)...))
	}
	if !validName(s.Name) {
		bad("name must be 1 to %d characters from [A-Za-z0-9_-]", MaxNameLen)
	}
	var sched cron.Schedule
	switch {
	case s.Interval < 0:
		bad("interval %v is negative", s.Interval)
	case s.Interval > 0 && s.Cron != "":
		bad("interval and cron are both set")
	case s.Interval == 0 && s.Cron == "":
		bad("neither interval nor cron is set")
	case s.Cron != "":
		var err error
		if sched, err = parseCron(s.Cron); err != nil {
			bad("cron %q: %w", s.Cron, err)
		} else if every, ok := sched.(cron.ConstantDelaySchedule); ok && every.Delay > MaxInterval {
			bad("cron %q: delay %v is longer than %v", s.Cron, every.Delay, MaxInterval)
		} else if sched.Next(time.Now()).IsZero() {
			bad("cron %q never fires", s.Cron)
		}
	case s.Interval < MinInterval:
		bad("interval %v is shorter than %v", s.Interval, MinInterval)
	case s.Interval > MaxInterval:
		bad("interval %v is longer than %v", s.Interval, MaxInterval)
	}
	if s.Timeout < 0 {
		bad("timeout %v is negative", s.Timeout)
	}
	switch s.Type {
	case Worker, All, Cluster:
	case 0:
		bad("type is not set (want worker or all)")
	default:
		bad("unknown type %d (want worker, all or cluster)", int(s.Type))
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	return sched, nil
}

// parseCron parses text with cronParser. The parser panics on some inputs
// (a "CRON_TZ=" prefix with nothing after it, for one); that is reported as
// an error.
func parseCron(text string) (sched cron.Schedule, err error) {
	defer func() {
		if p := recover(); p != nil {
			sched, err = nil, fmt.Errorf("cannot parse: %v", p)
		}
	}()
	return cronParser.Parse(text)
}

func validName(name string) bool {
	if name == "" || len(name) > MaxNameLen {
		return false
	}
	for _, c := range []byte(name) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
