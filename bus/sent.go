package bus

import "sync/atomic"

// verb is a messenger verb, counted each time a process uses it.
type verb int

const (
	verbBroadcast verb = iota
	verbSendToApp
	verbSendToAgent
	verbSendTo
	verbSendRandom
	verbSendToMaster
	verbRequest
	verbRequestAgent
	verbRequestMaster
	verbGather
	verbSendToFleet
	verbGatherFleet
	verbCount
)

// verbNames are the names [Conn.Sent] reports, as the methods are named in
// egg's messenger and in package yolk.
var verbNames = [verbCount]string{
	"broadcast", "sendToApp", "sendToAgent", "sendTo", "sendRandom", "sendToMaster",
	"request", "requestAgent", "requestMaster", "gather", "sendToFleet", "gatherFleet",
}

// sentCounts counts the calls of each verb.
type sentCounts [verbCount]atomic.Uint64

func (s *sentCounts) inc(v verb) { s[v].Add(1) }

// Sent returns how many times this connection used each messenger verb, by
// name (broadcast, sendToApp, sendToAgent, sendTo, sendRandom, sendToMaster,
// request, requestAgent, requestMaster, gather, sendToFleet, gatherFleet),
// failed calls included; verbs never used are left out. The master sums them
// over the processes for the rates of its status page.
func (c *Conn) Sent() map[string]uint64 {
	out := make(map[string]uint64)
	for v := range verbCount {
		if n := c.sent[v].Load(); n > 0 {
			out[verbNames[v]] = n
		}
	}
	return out
}
