package cli

import (
	"fmt"
	"strconv"
	"strings"
)

// ByteSize is a size in bytes, written as a byte count or with a unit: KiB,
// MiB or GiB (powers of 1024), up to 1 TiB. Applications see it as
// yolk.ByteSize.
type ByteSize int64

// UnmarshalText parses "32MiB", "512KiB", "1GiB" or "1048576".
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return fmt.Errorf("%q: want a byte count, or a number with KiB, MiB or GiB", text)
	}
	*b = ByteSize(n * mult)
	return nil
}

// String writes b in the largest unit that divides it: "256MiB", "1000".
func (b ByteSize) String() string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.mult == 0 {
			return strconv.FormatInt(int64(b)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10)
}
