package supervisor

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLifelineMasterKilled kills a master (this binary as mini-master) with
// SIGKILL and checks that its children see their lifeline end. Pdeathsig is
// off in that master, so only the lifeline can tell them.
func TestLifelineMasterKilled(t *testing.T) {
	dir := t.TempDir()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	var stderr syncBuffer
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(childEnv(), envChild+"=mini-master", "YOLK_TEST_DIR="+dir)
	cmd.Stdout, cmd.Stderr = pw, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	waited := false
	t.Cleanup(func() {
		if !waited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if t.Failed() {
			t.Logf("mini-master stderr:\n%s", stderr.String())
		}
	})

	if err := pr.SetReadDeadline(time.Now().Add(60 * time.Second)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the children's pids: %v", err)
	}
	pids := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "pids "))
	if len(pids) != 3 {
		t.Fatalf("mini-master printed %q, want 3 pids", line)
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waited = true
	for _, pid := range pids {
		waitFor(t, 30*time.Second, "child "+pid+" to see its lifeline end", func() bool {
			_, err := os.Stat(filepath.Join(dir, pid))
			return err == nil
		})
	}
}
