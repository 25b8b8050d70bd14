package master

import "testing"

func TestWorkerMemLimit(t *testing.T) {
	limit := func(n uint64, ok bool) func() (uint64, bool) { return func() (uint64, bool) { return n, ok } }
	for _, tc := range []struct {
		name    string
		environ []string
		workers int
		limit   func() (uint64, bool)
		want    uint64
	}{
		{"share", nil, 3, limit(4<<30, true), (4 << 30) / 10 * 9 / 4},
		{"one worker", []string{"PATH=/bin"}, 1, limit(1<<30, true), (1 << 30) / 10 * 9 / 2},
		{"no limit", nil, 3, limit(0, false), 0},
		{"the user's GOMEMLIMIT", []string{"GOMEMLIMIT=300MiB"}, 3, limit(4<<30, true), 0},
	} {
		if got := workerMemLimit(tc.environ, tc.workers, tc.limit); got != tc.want {
			t.Errorf("%s: workerMemLimit(%q, %d) = %d, want %d", tc.name, tc.environ, tc.workers, got, tc.want)
		}
	}
}
