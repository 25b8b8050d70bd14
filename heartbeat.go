package yolk

import (
	"runtime"
	"time"

	"github.com/yolkgo/yolk/internal/masterapi"
	"github.com/yolkgo/yolk/internal/procstat"
)

// heartbeat is the answer to the master's ping: this process is there, and
// what it uses. It runs on the bus's delivery goroutine, so it must be quick.
func (c *child) heartbeat(p *Process) masterapi.Heartbeat {
	hb := masterapi.Heartbeat{Goroutines: runtime.NumGoroutine(), Wire: p.conn.Wire(), Sent: p.conn.Sent(), Stalled: c.stall.stalled(time.Now())}
	if u, err := procstat.Self(); err == nil {
		hb.RSS, hb.CPU = u.RSS, u.CPU.Seconds()
	}
	if s := c.sched.Load(); s != nil {
		for _, pl := range s.Planned() {
			every := pl.Spec.Cron
			if pl.Spec.Interval > 0 {
				every = pl.Spec.Interval.String()
			}
			hb.Schedules = append(hb.Schedules, masterapi.Planned{Name: pl.Spec.Name, Type: pl.Spec.Type.String(),
				Every: every, Seq: pl.Last.Seq, Last: pl.Last.At, Next: pl.Next})
		}
	}
	if r := c.runner.Load(); r != nil {
		for _, res := range r.Results() {
			hb.Runs = append(hb.Runs, masterapi.RunResult{Name: res.Run.Name, Seq: res.Run.Seq, Started: res.Started,
				TookMs: float64(res.Took.Microseconds()) / 1000, Outcome: res.Outcome, Err: res.Err})
		}
	}
	return hb
}
