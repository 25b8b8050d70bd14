package bus

import (
	"encoding/binary"
	"fmt"
)

// A small strict JSON scanner (RFC 8259): it finds where a value ends and
// checks its syntax, without building anything. The envelope decoder uses it
// to take the data field as raw bytes, and the encoder to check data given as
// bytes. Like encoding/json it does not check that strings are valid UTF-8.

// maxDepth bounds the nesting of arrays and objects.
const maxDepth = 1000

// errTooDeep is the scanner's error for arrays and objects nested deeper than maxDepth.
var errTooDeep = fmt.Errorf("%w: nested deeper than %d", errBadEnvelope, maxDepth)

func syntaxError(b []byte, i int) error {
	if i >= len(b) {
		return fmt.Errorf("%w: unexpected end of JSON", errBadEnvelope)
	}
	return fmt.Errorf("%w: invalid character %q at offset %d", errBadEnvelope, b[i], i)
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipValue returns the offset just past the JSON value that starts at b[i].
func skipValue(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return i, syntaxError(b, i)
	}
	switch c := b[i]; {
	case c == '"':
		return skipString(b, i)
	case c == '{':
		return skipObject(b, i, depth+1)
	case c == '[':
		return skipArray(b, i, depth+1)
	case c == 't':
		return skipLiteral(b, i, "true")
	case c == 'f':
		return skipLiteral(b, i, "false")
	case c == 'n':
		return skipLiteral(b, i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		return skipNumber(b, i)
	}
	return i, syntaxError(b, i)
}

func skipObject(b []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return i, errTooDeep
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return i, syntaxError(b, i)
		}
		var err error
		if i, err = skipString(b, i); err != nil {
			return i, err
		}
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != ':' {
			return i, syntaxError(b, i)
		}
		if i, err = skipValue(b, skipSpace(b, i+1), depth); err != nil {
			return i, err
		}
		i = skipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
			continue
		}
		if i < len(b) && b[i] == '}' {
			return i + 1, nil
		}
		return i, syntaxError(b, i)
	}
}

func skipArray(b []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return i, errTooDeep
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		var err error
		if i, err = skipValue(b, i, depth); err != nil {
			return i, err
		}
		i = skipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
			continue
		}
		if i < len(b) && b[i] == ']' {
			return i + 1, nil
		}
		return i, syntaxError(b, i)
	}
}

// nestClass sorts the bytes nestsDeeper looks at: 1 a quote, 2 an opening
// and 3 a closing bracket.
var nestClass = func() (t [256]uint8) {
	t['"'] = 1
	t['['], t['{'] = 2, 2
	t[']'], t['}'] = 3, 3
	return t
}()

// nestsDeeper reports whether the arrays and objects of b, one valid JSON
// value, nest deeper than limit, as skipValue counts them. opens is at least
// the number of opening brackets in b (those in strings may be counted): it
// stops as soon as those ahead cannot reach the limit. It checks no syntax,
// so it is about twice as fast as skipValue: for the encoder, which checks
// what encoding/json wrote.
func nestsDeeper(b []byte, limit, opens int) bool {
	if opens <= limit {
		return false
	}
	depth := 0
	for i := 0; i < len(b); i++ {
		switch nestClass[b[i]] {
		case 1: // skip the string: to the quote that no backslash escapes
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case 2:
			opens--
			if depth++; depth > limit {
				return true
			}
		case 3: // the only place where depth+opens, the deepest it may get, drops
			if depth--; depth+opens <= limit {
				return false
			}
		}
	}
	return false
}

// stringStop marks the bytes that end a run of plain ASCII string bytes.
var stringStop = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	for c := 0x80; c < 0x100; c++ {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// skipString returns the offset just past the string that starts at b[i] (a '"').
func skipString(b []byte, i int) (int, error) {
	end, _, err := scanString(b, i)
	return end, err
}

// scanString is skipString that also reports whether the string is plain:
// ASCII without escapes, so that its bytes are its value.
func scanString(b []byte, i int) (end int, plain bool, err error) {
	plain = true
	for i++; i < len(b); {
		// Eight bytes at a time while none of them needs a look; a word that
		// does holds a stop byte, so the byte loop ends within it.
		for i+8 <= len(b) && !hasStringStop(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		for i < len(b) && !stringStop[b[i]] {
			i++
		}
		if i >= len(b) {
			break
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, plain, nil
		case c >= 0x80:
			plain = false
			i++
		case c == '\\':
			plain = false
			if i+1 >= len(b) {
				return i, false, syntaxError(b, i+1)
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return i, false, syntaxError(b, len(b))
				}
				for _, h := range b[i+2 : i+6] {
					if !isHex(h) {
						return i, false, fmt.Errorf("%w: bad \\u escape at offset %d", errBadEnvelope, i)
					}
				}
				i += 6
			default:
				return i, false, syntaxError(b, i+1)
			}
		default: // a control character
			return i, false, syntaxError(b, i)
		}
	}
	return i, false, syntaxError(b, i)
}

// load64 reads s[i:i+8] as a little-endian word (the compiler makes it one load).
func load64(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// hasStringStop reports whether one of the eight bytes of x is a stop byte of
// a JSON string: '"', '\\', a control character or a byte >= 0x80. It may
// report a word with a stop byte in it even when the stop byte it saw is not
// one (a borrow out of a real one), never a word without one.
func hasStringStop(x uint64) bool {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	quote := x ^ ('"' * ones)
	backslash := x ^ ('\\' * ones)
	return (x|(x-0x20*ones)|
		((quote-ones)&^quote)|
		((backslash-ones)&^backslash))&highs != 0
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// skipNumber returns the offset just past the number that starts at b[i].
func skipNumber(b []byte, i int) (int, error) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return i, syntaxError(b, i)
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return i, syntaxError(b, i)
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return i, syntaxError(b, i)
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	return i, nil
}

func skipLiteral(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, syntaxError(b, i)
	}
	return i + len(lit), nil
}
