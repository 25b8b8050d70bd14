package master

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/yolkgo/yolk/internal/cli"
)

// stateFile is what a running master leaves in its run directory so that
// `master status` and `master reload` can find it. It holds a control credential,
// so the file is readable by its owner only.
type stateFile struct {
	PID     int       `json:"pid"`
	Bus     string    `json:"bus"`
	User    string    `json:"user"`
	Secret  string    `json:"secret"`
	HTTP    string    `json:"http"`
	Admin   string    `json:"admin,omitempty"` // the status page's address; empty when off
	Started time.Time `json:"started"`
}

// runDir is the claimed run directory. write and remove resolve names in root,
// the directory claimRunDir checked, never through its path again, and follow
// no symlink in it.
type runDir struct{ root *os.Root }

const (
	stateName = "master.json"
	stateTemp = stateName + ".tmp"
)

// claimRunDir makes the run directory, or takes an existing one, and makes it
// 0700. It refuses a run directory that is a symlink, is not a directory or
// belongs to another user, and one where another master that is still alive
// has its state file. The caller calls remove when it is done.
func claimRunDir(path string) (*runDir, error) {
	root, err := openRunDir(path)
	if err != nil {
		return nil, cli.BadValue("YOLK_RUN_DIR", path, "%v", err)
	}
	d := &runDir{root: root}
	// In a container the master is often pid 1 both before and after a restart:
	// a state file naming our own pid is a previous life's.
	if st, err := readState(path); err == nil && st.PID != os.Getpid() && alive(st.PID) {
		root.Close()
		return nil, fmt.Errorf("a master is already running with %s (pid %d)", path, st.PID)
	}
	return d, nil
}

// openRunDir makes path (mode 0700) when it does not exist, checks it with
// checkRunDir, opens it and sets its mode to 0700.
func openRunDir(path string) (*os.Root, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(path, 0o700); err == nil {
			fi, err = os.Lstat(path)
		}
	}
	if err != nil {
		return nil, err
	}
	if err := checkRunDir(fi, os.Geteuid()); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(path)
	if err != nil {
		return nil, err
	}
	// OpenRoot follows a symlink: make sure it opened the directory just checked.
	if opened, err := root.Stat("."); err != nil || !os.SameFile(fi, opened) {
		root.Close()
		return nil, errors.New("the directory was replaced while it was opened")
	}
	if err := root.Chmod(".", 0o700); err != nil {
		root.Close()
		return nil, err
	}
	return root, nil
}

// checkRunDir refuses a run directory that is not a directory (a symlink
// included) or whose owner is not euid: whoever owns it could read the
// control credential or swap the state file. fi is what os.Lstat returned.
func checkRunDir(fi fs.FileInfo, euid int) error {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return errors.New("is a symbolic link; name the directory itself")
	case !fi.IsDir():
		return errors.New("not a directory")
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return errors.New("no owner known")
	}
	if int(st.Uid) != euid {
		return fmt.Errorf("owned by uid %d, not by this user (uid %d)", st.Uid, euid)
	}
	return nil
}

// write replaces the state file atomically. The temp file is made anew with
// mode 0600 (a stale one, or a symlink in its place, is removed first), then
// renamed over the state file, which replaces a symlink rather than follow it.
func (d *runDir) write(st stateFile) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := d.root.Remove(stateTemp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("write state: %w", err)
	}
	f, err := d.root.OpenFile(stateTemp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	err = f.Chmod(0o600) // the umask may have taken bits off; never more than these
	if _, werr := f.Write(b); err == nil {
		err = werr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = d.root.Rename(stateTemp, stateName)
	}
	if err != nil {
		d.root.Remove(stateTemp)
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// remove deletes the state file and closes the directory.
func (d *runDir) remove() {
	d.root.Remove(stateName)
	d.root.Close()
}

// errNoMaster says that no master runs with that run directory.
var errNoMaster = errors.New("no master is running")

func readState(path string) (stateFile, error) {
	var st stateFile
	b, err := readNoFollow(filepath.Join(path, stateName))
	if errors.Is(err, fs.ErrNotExist) {
		return st, fmt.Errorf("%w (no state file in %s)", errNoMaster, path)
	}
	if err != nil {
		return st, fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("read state %s: %w", filepath.Join(path, stateName), err)
	}
	return st, nil
}

// readNoFollow is os.ReadFile, but it fails on a symlink instead of following it.
func readNoFollow(name string) ([]byte, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// alive reports whether a process with that pid exists.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
