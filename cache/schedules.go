package cache

import (
	"time"

	"github.com/yolkgo/yolk/schedule"
)

// The example's two refresh schedules. The agent fires them; workers run them.
const (
	ForceRefresh = "force_refresh" // every worker ends on a fresh full fetch
	PullRefresh  = "pull_refresh"  // one worker checks the remote for a change
)

// Schedules returns the refresh schedules: force_refresh every force in all
// workers, pull_refresh every pull in one worker. A zero interval disables one.
func Schedules(force, pull time.Duration) []schedule.Spec {
	spec := func(name string, every time.Duration, t schedule.Type) schedule.Spec {
		s := schedule.Spec{Name: name, Interval: every, Type: t}
		if every <= 0 {
			s.Interval, s.Disable = time.Hour, true
		}
		return s
	}
	return []schedule.Spec{
		spec(ForceRefresh, force, schedule.All),
		spec(PullRefresh, pull, schedule.Worker),
	}
}
