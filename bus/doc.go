// Package bus is yolk's messenger: the verbs of egg.js's messenger (broadcast,
// sendToApp, sendToAgent, sendTo, sendRandom, on) plus request/reply, over the
// master's embedded NATS server. It is not the server (see bus/broker) and it
// knows nothing of processes, schedules or caches.
//
// Each process [Dial]s with a credential minted by the broker and gets a
// [Conn]. Every message goes to a subject whose last token is the sender's id
// and the broker's publish permissions pin that token, so a receiver's
// [Message.From] cannot be forged:
//
//	yolk.all.<event>.<from>       Broadcast: master, agent, every worker, the sender too
//	yolk.app.<event>.<from>       SendToApp, Gather: every worker
//	yolk.agent.<event>.<from>     SendToAgent: the agent
//	yolk.to.<id>.<event>.<from>   SendTo, Request: the process with that id
//	yolk.random.<event>.<from>    SendRandom: one worker (queue group "app")
//	yolk.master.<event>.<from>    SendToMaster, RequestMaster: the master
//	yolk.inbox.<id>.>             replies to the process with that id, and only it
//
// A handler is reached only through the routes it was registered for, not by
// its event's name alone. [Conn.On] handles what comes through every route
// but the master's; [Conn.OnMaster] handles the master route, which only the
// master has and on which the bus lets the agent and the workers send only
// "ready" and "state", and the control credential only "status" and
// "reload". So the master's status and reload handlers answer the control
// credential alone: a worker's Broadcast("reload") or Request(<master id>,
// "reload", ...) finds no handler of On at the master (it is dropped, or the
// sender gets [ErrNoReceiver]), and its SendToMaster("reload") is refused by
// the bus.
//
// The payload has one of two formats, the wire versions (compact.go). Version
// 1 is a JSON envelope,
// {"v":1,"kind":"event|send|req|reply|nack","event":..,"from":..,"role":..,"data":..,"error":..};
// version 2 is compact: a byte for the format, one for the kind and the
// sender's role, for a reply its sender and error, then the data; the event
// and the sender are the subject's. Every Conn reads both and sends version 1
// until [Conn.SetWire] says otherwise (the master tells its children when
// every process reads version 2). A receiver drops (and logs) a message
// whose envelope does not match its subject, has an unknown version, kind or
// role, or is not valid JSON (version 1) or is cut short (version 2).
//
// # What each verb promises when the receiver is absent or not ready
//
// Fan-out verbs, [Conn.Broadcast] and [Conn.SendToApp], are fire-and-forget:
// the message reaches, at most once, each process that was subscribed when it
// was published and had a handler for the event. An absent receiver is never
// an error; a process that starts, restarts or reconnects later does not get
// it (while the sender is reconnecting its messages are buffered, and they can
// reach the bus before the receivers have subscribed again). Whoever needs the
// state must catch up on (re)connect, as the cache does by version.
//
// [Conn.Gather] is the confirmed form of SendToApp: it returns the replies
// of the workers that were subscribed and had a handler, as many as arrived
// before it had want of them or ctx ended; none is an error wrapping
// [ErrNoReceiver]. A worker's handler error is in its reply's [Message.Err].
//
// Point-to-point verbs, [Conn.SendTo], [Conn.SendToAgent], [Conn.SendRandom]
// and [Conn.SendToMaster], are acknowledged: the receiving Conn acks on
// receipt, before its handler runs. While nobody is subscribed (the receiver
// restarts) or the receiver has no handler for the event yet, the sender
// retries with a short backoff (20ms doubling to 250ms) until ctx is done and
// then returns an error wrapping [ErrNoReceiver]. A nil error means the
// receiving Conn has the message and runs its handler; it does not mean the
// handler succeeded. If the first attempt reached a receiver whose ack did not
// come back before ctx ended, the error wraps ctx's error only: it may have
// been delivered. (So may a retry in flight when ctx ends, if the receiver
// appeared at that very moment; that error wraps ErrNoReceiver.) A call is
// never delivered twice: SendRandom reaches one worker.
//
// [Conn.Request] and [Conn.RequestMaster] retry like the point-to-point
// sends and return the handler's reply, an error wrapping [ErrNoReceiver] when
// nobody was there until ctx ended, ctx's error when the receiver did not
// answer in time, or a [*RemoteError] when its handler failed.
//
// Handlers of the events and sends of one route run one at a time, in arrival
// order; each request's handler runs on its own goroutine. A refused
// subscription or publish and a slow consumer are reported only
// asynchronously: the Conn logs each at error level (and calls
// [Options.OnError]). The Conn reconnects for ever; [Conn.Done] is closed
// when it is closed for good.
package bus
