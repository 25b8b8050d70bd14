package cache

import "sync"

// The refresh protocol:
//
//   - The service's current snapshot is the shared one (see [Shared]): a record in
//     a key-value bucket of the master's bus, ordered by the bus's revisions. Every
//     worker watches it and installs each new revision, so a push, a pull and a
//     force all reach the workers the same way, and a worker that starts or
//     reconnects gets the latest one from the same watch.
//   - The agent's Hub is the only process that reads the remote source while it is
//     there: pushes, pull checks and force runs all become one fetch loop in the
//     agent, which coalesces whatever arrives while a fetch is in flight into one
//     more, and publishes what changed.
//   - While the agent is away, the workers read the remote themselves: one of them
//     per pull interval (the pull lease in the bucket chooses it), and any worker
//     that has nothing at its start.
//   - Whoever publishes does so by compare-and-set on the revision its read of the
//     remote started from: a read that raced a newer publish is thrown away.

// Bus events of the refresh protocol.
const (
	EventFetch = "fetch" // Request to the agent: check (pull) or fetch (force) the remote now
)

// refreshBy are the causes a snapshot's record may name: they label metrics, so a
// writer may not make up new ones.
var refreshBy = map[string]bool{"start": true, "push": true, "pull": true, "force": true, "retry": true, "catchup": true}

// fetchRequest asks the agent to read the remote now.
type fetchRequest struct {
	By  string `json:"by"`  // pull: a conditional check; force: a full fetch; ping: nothing (is the agent there?)
	Seq uint64 `json:"seq"` // the schedule run; one fetch per force run however many workers ask
}

// fetchReply says what the shared snapshot is after the fetch.
type fetchReply struct {
	Version  string `json:"version"`
	Revision uint64 `json:"revision"`
	Changed  bool   `json:"changed"`
	Err      string `json:"err,omitempty"`
}

// signal wakes waiters whenever notify is called; the zero value is ready to use.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns a channel closed at the next notify.
func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}
