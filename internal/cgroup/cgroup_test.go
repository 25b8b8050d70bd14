package cgroup

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string // under the fake root; "self" is /proc/self/cgroup
		want  uint64
		ok    bool
	}{
		{"v2 own cgroup", map[string]string{"self": "0::/kubepods/pod1/c1\n", "kubepods/pod1/c1/memory.max": "536870912\n"}, 512 << 20, true},
		{"v2 namespace root", map[string]string{"self": "0::/\n", "memory.max": "1073741824\n"}, 1 << 30, true},
		{"v2 no limit", map[string]string{"self": "0::/user.slice\n", "user.slice/memory.max": "max\n"}, 0, false},
		{"v1", map[string]string{"self": "12:cpu,cpuacct:/docker/abc\n11:memory:/docker/abc\n", "memory/docker/abc/memory.limit_in_bytes": "268435456\n"}, 256 << 20, true},
		{"v1 no limit", map[string]string{"self": "11:memory:/\n", "memory/memory.limit_in_bytes": "9223372036854771712\n"}, 0, false},
		{"nothing", map[string]string{}, 0, false},
		{"garbage", map[string]string{"self": "0::/\n", "memory.max": "lots\n"}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			self := filepath.Join(t.TempDir(), "cgroup")
			for name, content := range tc.files {
				path := filepath.Join(root, name)
				if name == "self" {
					path = self
				}
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, ok := memoryLimit(root, self)
			if got != tc.want || ok != tc.ok {
				t.Errorf("memoryLimit() = %d, %v; want %d, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
