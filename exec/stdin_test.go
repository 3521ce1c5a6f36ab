package exec

import (
	"bytes"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipcflow/ipcflow/internal/testkit"
)

// A flow whose stage reads ipcflow's stdin over an edge ipcflow bridges
// (mq, shm, mmap, socket) ends when the stage does, with stdin still
// open, as over a pipe or fifo and as bash's `head -n 2` ends: the
// channel's bridge waited for the end of stdin (on a terminal, for lines
// typed after the stage was gone, which it swallowed).
func TestStdinEdgeNotWaitedFor(t *testing.T) {
	bin := testkit.BuildIpcflow(t)
	for _, typ := range []string{"pipe", "fifo", "mq", "shm", "mmap", "socket", "socket tcp"} {
		t.Run(typ, func(t *testing.T) {
			script := filepath.Join(t.TempDir(), "f.ipcflow")
			os.WriteFile(script, []byte("stage a = head -n 2\nstdin -["+typ+"]-> a\n"), 0o600)
			cmd := osexec.Command(bin, "run", script)
			in, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close() // held open until the run has ended
			var out bytes.Buffer
			cmd.Stdout = &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			in.Write([]byte("a\nb\nc\n"))
			ended := make(chan error, 1)
			go func() { ended <- cmd.Wait() }()
			select {
			case err := <-ended:
				if err != nil || out.String() != "a\nb\n" {
					t.Errorf("%v, stdout %q; want a and b", err, out.String())
				}
			case <-time.After(20 * time.Second): // a guard against the wait, not a measure
				cmd.Process.Kill()
				<-ended
				t.Errorf("the run waited for the end of stdin")
			}
		})
	}
}

// A one-program command too long for an argument runs in the stage
// shell, from a file, as bash's builtin echo would print it: it was
// exec'd, and failed with "argument list too long", quoting all of it.
func TestLongEchoRuns(t *testing.T) {
	bin := testkit.BuildIpcflow(t)
	word := strings.Repeat("x", 300000)
	script := filepath.Join(t.TempDir(), "f.ipcflow")
	os.WriteFile(script, []byte("stage a = echo "+word+"\n"), 0o600)
	out, err := osexec.Command(bin, "run", script).CombinedOutput()
	if err != nil || string(out) != word+"\n" {
		t.Errorf("%v; %d bytes of output, want the word and a newline", err, len(out))
	}
}

// The stage shell's echo into a pipe whose reader has gone ends the
// stage only where bash's SIGPIPE would end bash: not with SIGPIPE
// trapped or ignored, not for a function named echo, not for a write of
// nothing. The first four were killed, and "survived" never printed.
func TestEchoIntoGoneReaderLikeBash(t *testing.T) {
	bin := testkit.BuildIpcflow(t)
	for _, c := range []struct {
		cmd      string
		survives bool
	}{
		{`trap '' PIPE; sleep .3; echo hi; printf 'survived\n' >&2`, true},
		{`trap 'printf "got-pipe\n" >&2' PIPE; sleep .3; echo hi; printf 'survived\n' >&2`, true},
		{`echo() { printf 'wrapped %s\n' "$@" >&2; }; sleep .3; echo hi; printf 'survived\n' >&2`, true},
		{`sleep .3; printf ''; echo -n ''; printf 'survived\n' >&2`, true},
		{`sleep .3; echo hi; printf 'survived\n' >&2`, false},
	} {
		script := filepath.Join(t.TempDir(), "f.ipcflow")
		os.WriteFile(script, []byte("stage a = "+c.cmd+"\n"), 0o600)
		// Its stdout is a pipe whose reader, true, is gone at once.
		out, _ := osexec.Command("bash", "-c", `"$0" run "$1" | true`, bin, script).CombinedOutput()
		bashOut, _ := osexec.Command("bash", "-c", `bash -c "$0" | true`, c.cmd).CombinedOutput()
		if bytes.Contains(out, []byte("survived")) != c.survives || bytes.Contains(bashOut, []byte("survived")) != c.survives {
			t.Errorf("%s: want survived %v\nipcflow: %s\nbash: %s", c.cmd, c.survives, out, bashOut)
		}
	}
}
