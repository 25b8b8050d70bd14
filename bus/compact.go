package bus

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"
)

// The bus has three wire versions, each reading everything the ones before
// it do:
//
//   - 1, the JSON envelope (envelope.go). Every Conn reads it and sends it
//     until told otherwise, so that a process of an older yolk, which knows
//     only it, can always be reached.
//   - 2, the compact body below. It drops what the subject already says (the
//     event and, but in a reply, the sender) and the JSON around the rest:
//     a fan-out of 128 B carries 2 bytes besides its data instead of some 90,
//     and the receiver neither reads keys nor checks that the envelope and
//     the subject agree.
//   - 3, the compact body and batches of events in it (batch.go).
//
// A Conn sends a later version only once [Conn.SetWire] says so. The master
// says so in its answer to a child's ready report, when every process of the
// service reads it (masterapi.ReadyReply). A reply always has the request's
// format, and what crosses to another host of a fleet is always wire 1: the
// hosts of a fleet are upgraded one at a time.
//
// The compact body, in bytes:
//
//	0     2 (the format; a JSON envelope starts with '{' or white space)
//	1     kind | role<<4 (a batch's kind: batch.go)
//	        for a reply or a nack only:
//	2     n, the length of the sender's id (1 to 255), then the id
//	      the length of the error as a uvarint (0: none), then the error (UTF-8)
//	rest  data: one JSON value, as the sender's Conn checked it
//
// The receiver does not scan the data again: every sender checks it (see
// appendData), and a handler that decodes it hears of anything wrong.

// The wire versions.
const (
	wireJSON    = 1
	wireCompact = 2
	// WireVersion is the newest body format this package reads and sends. A
	// Conn reads every version up to it.
	WireVersion = wireBatch
)

// roleCodes are the roles' codes in a compact body; 0 is no role.
var roleCodes = [...]Role{1: RoleMaster, 2: RoleAgent, 3: RoleWorker, 4: RoleControl}

func roleCode(r Role) byte {
	for i, name := range roleCodes {
		if name == r && r != "" {
			return byte(i)
		}
	}
	return 0
}

// carriesSender reports whether a body of kind k says who sent it: a reply
// or a nack goes to an inbox, whose subject does not.
func carriesSender(k kind) bool { return k == kindReply || k == kindNack }

// appendCompactHead appends a compact body up to its data. from and errMsg
// are written only for a reply or a nack; from must be a valid id. Invalid
// UTF-8 in errMsg is replaced, as encoding/json does in a JSON envelope.
func appendCompactHead(dst []byte, k kind, from string, role Role, errMsg string) []byte {
	dst = append(dst, wireCompact, byte(k)|roleCode(role)<<4)
	if carriesSender(k) {
		errMsg = strings.ToValidUTF8(errMsg, "\uFFFD")
		dst = append(dst, byte(len(from)))
		dst = append(dst, from...)
		dst = binary.AppendUvarint(dst, uint64(len(errMsg)))
		dst = append(dst, errMsg...)
	}
	return dst
}

// decodeCompact decodes a compact body. The event (and, but in a reply, the
// sender) is the subject's; the returned slices alias b.
func decodeCompact(b []byte) (envelope, error) {
	e := envelope{wire: wireCompact}
	if len(b) < 2 || b[0] != wireCompact {
		return e, fmt.Errorf("%w: a compact body too short", errBadEnvelope)
	}
	e.kind = kind(b[1] & 0x0f)
	if e.kind < kindEvent || e.kind > kindBatch {
		return e, fmt.Errorf("%w: unknown kind %d", errBadEnvelope, e.kind)
	}
	if rc := int(b[1] >> 4); rc < len(roleCodes) && roleCodes[rc] != "" {
		e.role = roleCodes[rc]
	} else {
		return e, fmt.Errorf("%w: unknown role %d", errBadEnvelope, rc)
	}
	i := 2
	if carriesSender(e.kind) {
		if i >= len(b) || int(b[i]) > len(b)-i-1 {
			return e, fmt.Errorf("%w: the sender's id is cut short", errBadEnvelope)
		}
		n := int(b[i])
		e.from, i = b[i+1:i+1+n], i+1+n
		if why := badToken(string(e.from)); why != "" {
			return e, fmt.Errorf("%w: sender %.64q: %s", errBadEnvelope, e.from, why)
		}
		m, k := binary.Uvarint(b[i:])
		if k <= 0 || m > uint64(len(b)-i-k) {
			return e, fmt.Errorf("%w: the error is cut short", errBadEnvelope)
		}
		i += k
		msg := b[i : i+int(m)]
		if !utf8.Valid(msg) {
			return e, fmt.Errorf("%w: the error is not valid UTF-8", errBadEnvelope)
		}
		e.err, i = string(msg), i+int(m)
	}
	if i == len(b) {
		return e, fmt.Errorf("%w: no data", errBadEnvelope)
	}
	e.data = b[i:]
	return e, nil
}
