package watch

import (
	"bytes"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipcflow/ipcflow/internal/testkit"
)

// TestBinarySignals: `ipcflow watch` as users run it ends on SIGINT and
// SIGTERM with 130 and 143, its run stopped and nothing of it left: no
// process, no object in /dev/shm or /dev/mqueue, nothing in the run base.
func TestBinarySignals(t *testing.T) {
	bin := testkit.BuildIpcflow(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			dir, runBase := t.TempDir(), t.TempDir()
			script := filepath.Join(dir, "flow.ipcflow")
			os.WriteFile(script, []byte("stage a = echo run; sleep 60\nstage b = cat\nstage c = cat\na -[shm]-> b -[mq]-> c\n"), 0o600)
			check := testkit.LeakCheck(t, runBase)
			mark := fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano())
			cmd := osexec.Command(bin, "watch", script)
			cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runBase, "IPCFLOW_TEST_MARK="+mark)
			out, stderr := &syncBuffer{}, &syncBuffer{}
			cmd.Stdout, cmd.Stderr = out, stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				for _, pid := range testkit.MarkedProcs(mark) {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			})
			for end := time.Now().Add(deadline); !strings.Contains(out.String(), "run"); time.Sleep(5 * time.Millisecond) {
				if time.Now().After(end) {
					t.Fatalf("the run did not start; stderr:\n%s", stderr.String())
				}
			}
			cmd.Process.Signal(sig)
			err := cmd.Wait()
			if code := cmd.ProcessState.ExitCode(); code != 128+int(sig) {
				t.Fatalf("watch exited %d (%v), want %d; stderr:\n%s", code, err, 128+int(sig), stderr.String())
			}
			if !strings.Contains(stderr.String(), "ipcflow: watch: run ended: stopped by "+sig.String()) {
				t.Errorf("no line for the stopped run:\n%s", stderr.String())
			}
			testkit.WaitNoProcs(t, mark, 5*time.Second)
			check()
		})
	}
}

// TestInotifyLimits: used-up inotify limits give one line naming the
// sysctl, and status 2. The limits are lowered for real, in a user
// namespace of the test's own (user.max_inotify_* are per namespace), so
// the machine's are not touched.
func TestInotifyLimits(t *testing.T) {
	bin := testkit.BuildIpcflow(t)
	if err := osexec.Command("unshare", "-U", "-r", "true").Run(); err != nil {
		t.Skipf("no user namespace here: %v", err)
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "flow.ipcflow")
	os.WriteFile(script, []byte("stage a = echo run\n"), 0o600)
	for i := range 5 {
		os.MkdirAll(filepath.Join(dir, "tree", fmt.Sprint(i)), 0o700)
	}
	for _, c := range []struct{ sysctl, limit, want string }{
		{"max_inotify_watches", "3", "fs.inotify.max_user_watches"},
		{"max_inotify_instances", "0", "fs.inotify.max_user_instances"},
	} {
		t.Run(c.sysctl, func(t *testing.T) {
			cmd := osexec.Command("unshare", "-U", "-r", "sh", "-c",
				`echo "$1" > /proc/sys/user/"$2" && exec "$3" watch "$4" --on "$5"`,
				"sh", c.limit, c.sysctl, bin, script, filepath.Join(dir, "tree"))
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			cmd.Run()
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if code := cmd.ProcessState.ExitCode(); code != 2 || len(lines) != 1 || !strings.Contains(lines[0], c.want) || !strings.Contains(lines[0], "sudo sysctl "+c.want+"=") {
				t.Fatalf("exit %d, stderr:\n%s\nwant status 2 and one line naming %s", code, stderr.String(), c.want)
			}
			if stdout.Len() > 0 {
				t.Errorf("a run started: %q", stdout.String())
			}
			t.Log(lines[0])
		})
	}
}

// watch's own flag variables stop at watch: a stage of its runs sees no
// IPCFLOW_DEBOUNCE (or IPCFLOW_ON, IPCFLOW_GRACE...), and the run takes
// the value watch passes on as a flag.
func TestBinaryKeepsItsFlagVariables(t *testing.T) {
	bin := testkit.BuildIpcflow(t)
	dir, runBase := t.TempDir(), t.TempDir()
	script := filepath.Join(dir, "flow.ipcflow")
	os.WriteFile(script, []byte("stage a = echo \"debounce=${IPCFLOW_DEBOUNCE-unset} grace=${IPCFLOW_GRACE-unset}\"; sleep 60\n"), 0o600)
	check := testkit.LeakCheck(t, runBase)
	cmd := osexec.Command(bin, "watch", script)
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runBase, "IPCFLOW_DEBOUNCE=50ms", "IPCFLOW_GRACE=1s")
	out, stderr := &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(deadline); !strings.Contains(out.String(), "\n"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			cmd.Process.Kill()
			t.Fatalf("the run did not start; stderr:\n%s", stderr.String())
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if got := out.String(); got != "debounce=unset grace=unset\n" {
		t.Errorf("the stage saw %q, want no watch flag variable", got)
	}
	check()
}
