package master

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/yolkgo/yolk/internal/cli"
)

// claimAndWrite claims the run directory at path and writes a state file in it,
// as the master does at its start.
func claimAndWrite(t *testing.T, path string) {
	t.Helper()
	d, err := claimRunDir(path)
	if err != nil {
		t.Fatalf("claimRunDir(%s) = %v", path, err)
	}
	t.Cleanup(d.remove)
	if err := d.write(stateFile{PID: os.Getpid(), Secret: "s3cret", Started: time.Now()}); err != nil {
		t.Fatalf("write() = %v", err)
	}
}

// wantMode fails the test unless the file at path (not followed) has that mode.
func wantMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode(); got != want {
		t.Errorf("mode of %s = %v, want %v", path, got, want)
	}
}

// The run directory and the state file are private whatever was there before:
// a directory made 0777 and a stale 0666 temp file gave a 0666 master.json.
func TestRunDirIsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "master.json.tmp")
	if err := os.WriteFile(tmp, []byte("stale"), 0o666); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]fs.FileMode{dir: 0o777, tmp: 0o666} {
		if err := os.Chmod(name, mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}

	claimAndWrite(t, dir)
	wantMode(t, dir, fs.ModeDir|0o700)
	wantMode(t, filepath.Join(dir, "master.json"), 0o600)
	if st, err := readState(dir); err != nil || st.Secret != "s3cret" {
		t.Errorf("readState() = %+v, %v; want the state written", st, err)
	}
	if _, err := os.Lstat(tmp); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Lstat(%s) = %v, want it gone (renamed)", tmp, err)
	}
}

// A symlink planted where the master writes its state is replaced, never
// followed: the file it points at is not written.
func TestRunDirWriteFollowsNoSymlink(t *testing.T) {
	for _, name := range []string{"master.json.tmp", "master.json"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "run")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			target := filepath.Join(t.TempDir(), "target")
			if err := os.WriteFile(target, []byte("untouched"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}

			claimAndWrite(t, dir)
			if b, err := os.ReadFile(target); err != nil || string(b) != "untouched" {
				t.Errorf("the symlink's target holds %q, %v; want it untouched", b, err)
			}
			wantMode(t, target, 0o644)
			wantMode(t, filepath.Join(dir, "master.json"), 0o600)
			if st, err := readState(dir); err != nil || st.Secret != "s3cret" {
				t.Errorf("readState() = %+v, %v; want the state written", st, err)
			}
		})
	}
}

// A run directory that is a symlink is refused with an error naming
// YOLK_RUN_DIR, and nothing is written or changed where it points.
func TestRunDirSymlinkIsRefused(t *testing.T) {
	target := t.TempDir()
	if err := os.Chmod(target, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "run")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}

	d, err := claimRunDir(link)
	if err == nil {
		d.remove()
		t.Fatalf("claimRunDir(symlink) = nil, want an error")
	}
	var ue *cli.UsageError
	if !errors.As(err, &ue) || ue.Var != "YOLK_RUN_DIR" || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("claimRunDir(symlink) = %v, want a usage error naming YOLK_RUN_DIR and the symbolic link", err)
	}
	wantMode(t, target, fs.ModeDir|0o755)
	if ents, err := os.ReadDir(target); err != nil || len(ents) != 0 {
		t.Errorf("ReadDir(target) = %v, %v; want it empty", ents, err)
	}
}

// fakeInfo is a FileInfo as Lstat returns it, with the owner a test picks.
type fakeInfo struct {
	mode fs.FileMode
	uid  uint32
}

func (f fakeInfo) Name() string       { return "run" }
func (f fakeInfo) Size() int64        { return 0 }
func (f fakeInfo) Mode() fs.FileMode  { return f.mode }
func (f fakeInfo) ModTime() time.Time { return time.Time{} }
func (f fakeInfo) IsDir() bool        { return f.mode.IsDir() }
func (f fakeInfo) Sys() any           { return &syscall.Stat_t{Uid: f.uid} }

func TestCheckRunDir(t *testing.T) {
	const me = 1000
	tests := []struct {
		name string
		fi   fs.FileInfo
		want string // in the error; "" for none
	}{
		{"mine", fakeInfo{mode: fs.ModeDir | 0o777, uid: me}, ""},
		{"another user's", fakeInfo{mode: fs.ModeDir | 0o700, uid: me + 1}, "owned by uid 1001"},
		{"root's", fakeInfo{mode: fs.ModeDir | 0o700, uid: 0}, "owned by uid 0"},
		{"a symlink", fakeInfo{mode: fs.ModeSymlink | 0o777, uid: me}, "symbolic link"},
		{"a file", fakeInfo{mode: 0o600, uid: me}, "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkRunDir(tt.fi, me)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("checkRunDir(%v, uid %d) = %v, want %q", tt.fi.Mode(), tt.fi.Sys().(*syscall.Stat_t).Uid, err, tt.want)
			}
		})
	}
}

// A run directory owned by another user is refused and left as it was. Only
// root can give a directory away; TestCheckRunDir covers the rule for everyone.
func TestRunDirOfAnotherUserIsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to another user needs root; TestCheckRunDir tests the check itself")
	}
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 12345, 12345); err != nil {
		t.Fatal(err)
	}
	d, err := claimRunDir(dir)
	if err == nil {
		d.remove()
		t.Fatalf("claimRunDir(a directory of uid 12345) = nil, want an error")
	}
	if !strings.Contains(err.Error(), "owned by uid 12345") {
		t.Errorf("claimRunDir(a directory of uid 12345) = %v, want it to name the owner", err)
	}
	wantMode(t, dir, fs.ModeDir|0o755)
	if _, err := os.Lstat(filepath.Join(dir, "master.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Lstat(master.json) = %v, want none written", err)
	}
}

// Only a worker's row has a slot in JSON (the page and `master status --json`).
func TestProcessStatusJSON(t *testing.T) {
	for _, tt := range []struct {
		p    processStatus
		want string
	}{
		{processStatus{Role: "worker", Slot: 0}, `"slot":0`},
		{processStatus{Role: "worker", Slot: 2}, `"slot":2`},
		{processStatus{Role: "agent"}, ""},
		{processStatus{Role: "master"}, ""},
	} {
		b, err := json.Marshal(tt.p)
		if err != nil {
			t.Fatal(err)
		}
		if has := strings.Contains(string(b), `"slot"`); tt.want == "" && has || tt.want != "" && !strings.Contains(string(b), tt.want) {
			t.Errorf("json.Marshal(%s in slot %d) = %s, want slot %q", tt.p.Role, tt.p.Slot, b, tt.want)
		}
		var back processStatus
		if err := json.Unmarshal(b, &back); err != nil || back.Role != tt.p.Role || back.Slot != tt.p.Slot {
			t.Errorf("json.Unmarshal(%s) = %+v, %v; want %+v", b, back, err, tt.p)
		}
	}
}
