package yolk

import (
	"context"

	"github.com/yolkgo/yolk/bus"
)

// The messenger: egg's verbs over the bus, with the delivery promises of package
// bus (see its documentation: fan-out verbs are at most once, point-to-point
// verbs are acknowledged and retried until ctx ends). Event names are single
// subject tokens; data is JSON-encoded ([]byte and json.RawMessage are sent as
// they are). Each method is safe for concurrent use.

// ID returns this process's id on the bus: its pid in fork mode, YOLK_ID or
// <role>-<random> in external mode. [Process.SendTo] and [Process.Request]
// take it, and a handler sees it in [bus.Message].From.
func (p *Process) ID() string { return p.conn.ID() }

// Broadcast sends event to the agent and every worker, this process too
// (egg's broadcast): fire-and-forget. See [bus.Conn.Broadcast].
func (p *Process) Broadcast(event string, data any) error { return p.conn.Broadcast(event, data) }

// SendToApp sends event to every worker (egg's sendToApp): fire-and-forget.
// See [bus.Conn.SendToApp]; [Process.Gather] is its confirmed form.
func (p *Process) SendToApp(event string, data any) error { return p.conn.SendToApp(event, data) }

// SendToAgent sends event to the agent (egg's sendToAgent), acknowledged on
// receipt, and retried while the agent is away until ctx ends. See
// [bus.Conn.SendToAgent].
func (p *Process) SendToAgent(ctx context.Context, event string, data any) error {
	return p.conn.SendToAgent(ctx, event, data)
}

// SendTo sends event to the process with that id (egg's sendTo), acknowledged
// and retried as SendToAgent. See [bus.Conn.SendTo].
func (p *Process) SendTo(ctx context.Context, id, event string, data any) error {
	return p.conn.SendTo(ctx, id, event, data)
}

// SendRandom sends event to one worker chosen by the bus (egg's sendRandom),
// acknowledged and retried as SendToAgent. See [bus.Conn.SendRandom].
func (p *Process) SendRandom(ctx context.Context, event string, data any) error {
	return p.conn.SendRandom(ctx, event, data)
}

// Request sends event to the process with that id and returns its handler's
// reply. See [bus.Conn.Request].
func (p *Process) Request(ctx context.Context, id, event string, data any) (bus.Message, error) {
	return p.conn.Request(ctx, id, event, data)
}

// RequestAgent is Request to the agent, whatever its id. See
// [bus.Conn.RequestAgent].
func (p *Process) RequestAgent(ctx context.Context, event string, data any) (bus.Message, error) {
	return p.conn.RequestAgent(ctx, event, data)
}

// Gather sends a request for event to every worker and returns their replies,
// once it has want of them or ctx ends (want <= 0: when ctx ends). See
// [bus.Conn.Gather].
func (p *Process) Gather(ctx context.Context, event string, data any, want int) ([]bus.Message, error) {
	return p.conn.Gather(ctx, event, data, want)
}
