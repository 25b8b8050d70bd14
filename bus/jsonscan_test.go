package bus

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// TestHasStringStop checks the word-at-a-time test against the byte table: it
// must report every word holding a stop byte, at any position, beside any
// other bytes; a word of ordinary bytes only must pass.
func TestHasStringStop(t *testing.T) {
	word := func(b [8]byte) uint64 { return binary.LittleEndian.Uint64(b[:]) }
	for c := range 256 {
		for pos := range 8 {
			for _, fill := range []byte{'x', ' ', '~', 0x21, '"' + 1, '\\' - 1} {
				var b [8]byte
				for i := range b {
					b[i] = fill
				}
				b[pos] = byte(c)
				if got, want := hasStringStop(word(b)), stringStop[c]; got != want {
					t.Fatalf("byte %#x at %d among %q: hasStringStop = %v, want %v", c, pos, fill, got, want)
				}
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 1_000_000 {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], r.Uint64())
		want := false
		for _, c := range b {
			want = want || stringStop[c]
		}
		if !want && hasStringStop(word(b)) {
			t.Fatalf("%q: stop reported in a word without one", b)
		}
		if want && !hasStringStop(word(b)) {
			t.Fatalf("%q: stop byte missed", b)
		}
	}
}
