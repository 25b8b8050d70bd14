package cli

import "testing"

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{
		"32MiB": 32 << 20, "512KiB": 512 << 10, "1GiB": 1 << 30, "1048576": 1 << 20, " 2 MiB ": 2 << 20, "0": 0, "1000": 1000,
	} {
		var b ByteSize
		if err := b.UnmarshalText([]byte(in)); err != nil || b != want {
			t.Errorf("UnmarshalText(%q): %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "abc", "-1", "1.5MiB", "32MB", "1e9", "99999999999999999999", "2000GiB", "MiB"} {
		var b ByteSize = 7
		if err := b.UnmarshalText([]byte(in)); err == nil || b != 7 {
			t.Errorf("UnmarshalText(%q): %d, %v; want an error and no change", in, b, err)
		}
	}
	for b, want := range map[ByteSize]string{256 << 20: "256MiB", 1 << 30: "1GiB", 1536: "1536", 1000: "1000", 0: "0", 3 << 10: "3KiB"} {
		if got := b.String(); got != want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(b), got, want)
		}
	}
}
