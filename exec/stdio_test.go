package exec

import (
	"bytes"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipcflow/ipcflow/internal/testkit"
)

// A closed standard output or error is given to the stages closed, as
// bash gives it to its commands: a stage writing stdout fails (status 1,
// EBADF), a copy into it fails, and a write to a closed stderr fails
// unseen while the stage goes on. A stdout that is /dev/null is not
// closed (issue 18).
func TestClosedStdioAsInBash(t *testing.T) {
	if _, err := osexec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	bin := testkit.BuildIpcflow(t)
	for _, c := range []struct {
		name, flow, redirect, bash string
		want                       int
	}{
		{"builtin-echo", "stage a = echo hi", ">&-", "echo hi", 1},
		{"program", "stage a = /bin/echo hi", ">&-", "/bin/echo hi", 1},
		{"copy-into-stdout", "stage a = echo hi\na -[shm]-> stdout", ">&-", "echo hi | cat", 1},
		{"stderr-closed", "stage a = echo warn >&2; echo out", "2>&-", "echo warn >&2; echo out", 0},
		{"stdout-devnull", "stage a = echo hi", ">/dev/null", "echo hi", 0},
		// The stage shell's programs get it closed too: Go's runtime
		// had opened /dev/null there, and cat's bytes went into it.
		{"shell-program", "stage a = seq 3 | cat | head -2", ">&-", "seq 3 | cat | head -2", 1},
		{"shell-builtin", "stage a = echo hi; echo there", ">&-", "echo hi; echo there", 1},
		// So do a limited program (through the role "limits") and a
		// replicated stage's copies (through the runner), both Go.
		{"limited-program", "stage a limit files=64 = /bin/echo hi", ">&-", "/bin/echo hi", 1},
		{"replicas", "stage a[2] = cat /etc/hostname", ">&-", "cat /etc/hostname", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			script := filepath.Join(dir, "f.ipcflow")
			os.WriteFile(script, []byte(c.flow+"\n"), 0o600)
			runBase := t.TempDir()
			check := testkit.LeakCheck(t, runBase)
			var stdout, stderr bytes.Buffer
			cmd := osexec.Command("bash", "-c", `exec "$0" run "$1" `+c.redirect, bin, script)
			cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runBase)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			got := exitCode(t, cmd.Run())
			want := exitCode(t, osexec.Command("bash", "-c", "{ "+c.bash+"; } "+c.redirect).Run())
			if got != c.want || want != c.want {
				t.Errorf("exit status %d, bash %d, want %d; stderr: %s", got, want, c.want, stderr.Bytes())
			}
			if c.want == 1 && !strings.Contains(strings.ToLower(stderr.String()), "bad file descriptor") {
				t.Errorf("stderr does not say why: %q", stderr.Bytes())
			}
			if c.name == "stderr-closed" && stdout.String() != "out\n" {
				t.Errorf("stdout %q, want the stage to go on past its failed stderr write", stdout.Bytes())
			}
			check()
		})
	}
}
