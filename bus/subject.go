package bus

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Role is what a process is on the bus. It decides the subjects the process
// may publish and subscribe (see [Permissions]).
type Role string

// The roles of yolk's processes.
const (
	RoleMaster  Role = "master"
	RoleAgent   Role = "agent"
	RoleWorker  Role = "worker"
	RoleControl Role = "control" // the `master status` / `master reload` command line
)

// Conventional ids of the processes that are not children of the master.
const (
	MasterID  = "master" // the master's own in-process connection
	ControlID = "ctl"    // the `master status` / `master reload` command line
)

// QueueApp is the queue group of the workers' [Conn.SendRandom] route.
const QueueApp = "app"

// maxToken is the longest event name or id, in bytes.
const maxToken = 64

// Sentinel errors. Errors returned by this package wrap them, so test with [errors.Is].
var (
	// ErrNoReceiver: nobody was subscribed to a point-to-point send or request
	// (or nobody had a handler for its event) until the context ended.
	ErrNoReceiver = errors.New("bus: no receiver")
	// ErrBadEvent: an event name is not a single subject token.
	ErrBadEvent = errors.New("bus: bad event name")
	// ErrBadID: a process id is not a single subject token.
	ErrBadID = errors.New("bus: bad id")
	// ErrBadData: no receiver would accept the data: given as []byte or
	// json.RawMessage it is not one valid JSON value, or its arrays and
	// objects nest deeper than 1000 levels. The send fails before publishing.
	ErrBadData = errors.New("bus: bad data")
	// ErrClosed: the Conn is closed or draining.
	ErrClosed = errors.New("bus: connection closed")
)

// ValidEvent reports whether name can be an event name: a single subject
// token of 1 to 64 bytes of valid UTF-8 without '.', '*', '>', spaces, control
// characters, '"' or '\'. The returned error wraps [ErrBadEvent].
func ValidEvent(name string) error {
	if why := badToken(name); why != "" {
		return fmt.Errorf("%w %q: %s", ErrBadEvent, name, why)
	}
	return nil
}

// ValidID reports whether id can be a process id: the same rule as [ValidEvent].
// The returned error wraps [ErrBadID].
func ValidID(id string) error {
	if why := badToken(id); why != "" {
		return fmt.Errorf("%w %q: %s", ErrBadID, id, why)
	}
	return nil
}

// ValidSubject reports whether s is a literal NATS subject one can publish
// and subscribe on (on any broker, not only the bus): up to 1024 bytes of dot-separated non-empty tokens of
// valid UTF-8, without wildcards ('*', '>'), white space or control
// characters. (A protocol line, subject included, has at most 4096 bytes.)
func ValidSubject(s string) bool {
	if s == "" || len(s) > 1024 || !utf8.ValidString(s) {
		return false
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || strings.ContainsAny(tok, "*>") {
			return false
		}
		for _, r := range tok {
			if unicode.IsSpace(r) || unicode.IsControl(r) {
				return false
			}
		}
	}
	return true
}

// badToken says what is wrong with s as a subject token, or "" if nothing is.
func badToken(s string) string {
	if s == "" {
		return "empty"
	}
	if len(s) > maxToken {
		return fmt.Sprintf("longer than %d bytes", maxToken)
	}
	ascii := true
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b == '.':
			return "contains '.'"
		case b == '*' || b == '>':
			return "contains a wildcard"
		case b == ' ':
			return "contains a space"
		case b < 0x20 || b == 0x7f:
			return "contains a control character"
		case b == '"' || b == '\\':
			return "contains a quote or backslash"
		case b >= 0x80:
			ascii = false
		}
	}
	if !ascii {
		if !utf8.ValidString(s) {
			return "not valid UTF-8"
		}
		for _, r := range s {
			if unicode.IsSpace(r) || unicode.IsControl(r) {
				return "contains a non-ASCII space or control character"
			}
		}
	}
	return ""
}

// Valid reports whether r is one of the four roles.
func (r Role) Valid() bool {
	switch r {
	case RoleMaster, RoleAgent, RoleWorker, RoleControl:
		return true
	}
	return false
}

// Subject prefixes, one per verb. The full subject is prefix + [id + "."] + event + "." + from.
const (
	prefixAll    = "yolk.all."
	prefixApp    = "yolk.app."
	prefixAgent  = "yolk.agent."
	prefixTo     = "yolk.to."
	prefixRandom = "yolk.random."
	prefixMaster = "yolk.master."
	prefixInbox  = "yolk.inbox."
)

// InboxPrefix is the prefix of the reply subjects of process id
// (nats.CustomInboxPrefix): only that process may subscribe below it.
func InboxPrefix(id string) string { return "yolk.inbox." + id }

// inboxPrefix is the inbox of process id: the host's, or on a fleet host the
// fleet's, which replies from other hosts can reach.
func inboxPrefix(host, id string) string {
	if host != "" {
		return fleetInboxPrefix(host, id)
	}
	return InboxPrefix(id)
}

// eventFrom returns the last two tokens of subject: the event and the sender.
func eventFrom(subject string) (event, from string, ok bool) {
	i := strings.LastIndexByte(subject, '.')
	if i < 0 {
		return "", "", false
	}
	j := strings.LastIndexByte(subject[:i], '.') // -1: the subject is event.from
	return subject[j+1 : i], subject[i+1:], true
}

// Perms are the subjects a process may publish and subscribe, in nats-server
// syntax: a subscribe entry may name a queue group after a space
// ("yolk.random.*.* app" allows only that queue group). AllowResponses means the
// process may publish one reply to the reply subject of each request it received.
type Perms struct {
	Publish, Subscribe []string
	AllowResponses     bool
}

// Permissions returns what a process of role with that id may publish and
// subscribe. The sender id is the last token of every subject it may publish,
// so a receiver's [Message.From] cannot be forged. An unknown role or a bad id
// gets no permission at all. The master is trusted (in-process) and gets yolk.>.
func Permissions(role Role, id string) Perms {
	if ValidID(id) != nil {
		return Perms{Publish: []string{}, Subscribe: []string{}}
	}
	switch role {
	case RoleMaster:
		return Perms{Publish: []string{"yolk.>"}, Subscribe: []string{"yolk.>"}}
	case RoleWorker:
		return Perms{
			Publish: childPublish(id),
			Subscribe: []string{
				prefixAll + "*.*",
				prefixApp + "*.*",
				prefixTo + id + ".*.*",
				prefixRandom + "*.* " + QueueApp,
				prefixInbox + id + ".>",
			},
			AllowResponses: true,
		}
	case RoleAgent:
		return Perms{
			Publish: childPublish(id),
			Subscribe: []string{
				prefixAll + "*.*",
				prefixAgent + "*.*",
				prefixTo + id + ".*.*",
				prefixInbox + id + ".>",
			},
			AllowResponses: true,
		}
	case RoleControl:
		return Perms{
			Publish: []string{
				prefixMaster + "status." + id,
				prefixMaster + "reload." + id,
			},
			Subscribe: []string{prefixInbox + id + ".>"},
		}
	}
	return Perms{Publish: []string{}, Subscribe: []string{}}
}

// childPublish is what the agent and a worker may publish.
func childPublish(id string) []string {
	return []string{
		prefixAll + "*." + id,
		prefixApp + "*." + id,
		prefixAgent + "*." + id,
		prefixTo + "*.*." + id,
		prefixRandom + "*." + id,
		prefixMaster + "ready." + id,
		prefixMaster + "state." + id,
	}
}
