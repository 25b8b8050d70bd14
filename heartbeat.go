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
	hb := masterapi.Heartbeat{Goroutines: runtime.NumGoroutine(), Sent: p.conn.Sent(), Stalled: c.stall.stalled(time.Now())}
	if u, err := procstat.Self(); err == nil {
		hb.RSS, hb.CPU = u.RSS, u.CPU.Seconds()
	}
	return hb
}
