package master

import (
	"encoding/json"
	"errors"
	"fmt"
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
	Started time.Time `json:"started"`
}

type runDir struct{ path string }

func (d runDir) file() string { return filepath.Join(d.path, "master.json") }

// claimRunDir makes the run directory (mode 0700) and refuses when another master
// that is still alive has its state file there.
func claimRunDir(path string) (runDir, error) {
	d := runDir{path: path}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return d, cli.BadValue("YOLK_RUN_DIR", path, "%v", err)
	}
	// In a container the master is often pid 1 both before and after a restart:
	// a state file naming our own pid is a previous life's.
	if st, err := readState(path); err == nil && st.PID != os.Getpid() && alive(st.PID) {
		return d, fmt.Errorf("a master is already running with %s (pid %d)", path, st.PID)
	}
	return d, nil
}

func (d runDir) write(st stateFile) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := d.file() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp, d.file()); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

func (d runDir) remove() { os.Remove(d.file()) }

// errNoMaster says that no master runs with that run directory.
var errNoMaster = errors.New("no master is running")

func readState(path string) (stateFile, error) {
	var st stateFile
	b, err := os.ReadFile(filepath.Join(path, "master.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return st, fmt.Errorf("%w (no state file in %s)", errNoMaster, path)
	}
	if err != nil {
		return st, fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("read state %s: %w", filepath.Join(path, "master.json"), err)
	}
	return st, nil
}

// alive reports whether a process with that pid exists.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
