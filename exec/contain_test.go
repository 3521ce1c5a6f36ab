package exec

import (
	"bytes"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/contain"
	"github.com/ipcflow/ipcflow/internal/testkit"
)

// A stage's descendant that leaves its process group and session
// (setsid) dies with the run where the run has a cgroup: at the end of a
// run, and within a moment of a SIGKILL of ipcflow (issue 10). Where no
// cgroup can be made, the test says so and skips: process groups cannot
// reach such a process, as docs/exec.md says.
func TestEscapedDescendantDiesWithTheRun(t *testing.T) {
	if _, err := osexec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	if _, ok := contain.Find(); !ok {
		t.Skip("no cgroup this user may create here: runs are held by process groups only")
	}
	bin := testkit.BuildIpcflow(t)
	for _, how := range []string{"end", "sigkill"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			pidFile := filepath.Join(dir, "escaped.pid")
			// As the issue had it: bash leaves its background job running.
			body := "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! > " + pidFile + "; yes | head -c 2000000"
			if how == "sigkill" {
				body += "; sleep 300"
			}
			flow := "stage src = bash -c '" + body + "'\nstage sink = wc -c\nsrc -> sink\n"
			script := filepath.Join(dir, "f.ipcflow")
			os.WriteFile(script, []byte(flow), 0o600)
			runBase := t.TempDir()
			check := testkit.LeakCheck(t, runBase)
			cmd := osexec.Command(bin, "run", script)
			cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runBase)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			escaped := waitForPid(t, pidFile)
			defer unix.Kill(escaped, unix.SIGKILL)
			if how == "sigkill" {
				cmd.Process.Signal(os.Kill)
				cmd.Wait()
			} else if code := exitCode(t, cmd.Wait()); code != 0 || stdout.String() != "2000000\n" {
				t.Fatalf("exit status %d, output %q: %s", code, stdout.String(), stderr.Bytes())
			}
			deadline := time.Now().Add(1500 * time.Millisecond)
			for alive(escaped) {
				if time.Now().After(deadline) {
					t.Fatalf("the descendant that left its session (pid %d) outlived the run by 1.5 s", escaped)
				}
				time.Sleep(10 * time.Millisecond)
			}
			check()
		})
	}
}

func waitForPid(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && bytes.HasSuffix(b, []byte("\n")) {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err == nil {
				return pid
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("the stage never wrote %s", path)
	return 0
}

// alive: the process exists and is not a zombie (a zombie is dead; its
// parent, ipcflow's subreaper or init, reaps it when it gets to it).
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	return !testkit.IsZombie(stat)
}
