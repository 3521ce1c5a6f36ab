package exec

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipcflow/ipcflow/internal/testkit"
	"github.com/ipcflow/ipcflow/parser"
)

// Flows of the stage shell that are compared with `bash -c` on the same
// command: output, exit status and how long it takes.

func init() {
	testFlows["background"] = func() *parser.Graph {
		b := newGraph()
		b.stage("c", `trap 'echo "trapped $?"' EXIT; sleep 30 >/dev/null & echo body; (exit 4)`)
		return b.g
	}
}

// The stage ends with its foreground command, as `bash -c` does: the EXIT
// trap runs then, with the command's status, and the run does not wait
// for the background sleep; what is left of it in the stage's group is
// ended with the run, so nothing outlives it.
func TestStageShellDoesNotWaitForBackgroundJobs(t *testing.T) {
	want := "body\ntrapped 4\n"
	fr := newFlowRun(t, "background")
	start := time.Now()
	code := fr.run(t)
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the run took %v: it waited for the background job", took)
	}
	if code != 4 {
		t.Errorf("exit status %d, bash 4: %s", code, fr.stderr.Bytes())
	}
	if fr.stdout.String() != want {
		t.Errorf("stdout %q, bash %q", fr.stdout.String(), want)
	}
	testkit.WaitNoProcs(t, fr.mark, time.Second)
}

func init() {
	testFlows["orphan"] = func() *parser.Graph {
		b := newGraph()
		b.stage("a", `sh -c "sleep 100 > /dev/null 2>&1 &"`)
		return b.g
	}
}

// What a stage leaves running in its group does not outlive a run that
// succeeded, any more than one that was torn down.
func TestLeftoversEndWithTheRun(t *testing.T) {
	fr := newFlowRun(t, "orphan", "--grace=500ms")
	if code := fr.run(t); code != 0 {
		t.Errorf("exit status %d, want 0; stderr:\n%s", code, fr.stderr.Bytes())
	}
	testkit.WaitNoProcs(t, fr.mark, 200*time.Millisecond)
}

// Commands whose output and status in a one-stage flow must be what
// `bash -c` gives, stdout and stderr apart from bash's "bash: line 1: "
// prefix.
var shellLikeBash = []struct{ name, cmd string }{
	{"trap-signals", `trap 'echo x' term 15 SIGINT sigusr1 0; trap; trap -p TERM; trap '' KILL; echo rc=$?; trap x BOGUS; echo rc=$?; trap - term; trap -p`},
	{"trap-runs-after-kill", `trap 'echo got TERM; exit 3' TERM; kill -TERM $$; echo after`},
	{"trap-keeps-status", `trap 'echo got USR1' USR1; kill -s USR1 $$; echo after $?`},
	{"trap-ignore-inherited", `trap '' TERM; kill -TERM $$; echo survived; sh -c 'kill -TERM $$; echo child survived'`},
	{"trap-in-function", `f() { trap 'echo in f' USR1; kill -USR1 $$; :; }; f; echo done`},
	{"needs-bash", "umask 027; umask; printf -v x %s hi; echo $x; echo to3 3>&1 >&3"},
	{"proc-subst-out", "seq 3 | tee >(tac) >/dev/null"},
	// A builtin's write to a pipe whose reader finished ends its
	// (sub)shell, as SIGPIPE does bash's: these ran for ever.
	{"echo-loop-into-head", `while true; do echo y; done | head -1; echo after`},
	{"printf-loop-into-head", `i=0; while :; do printf '%d\n' $i; i=$((i+1)); done | head -2; echo after`},
	// echo and printf say when their write fails, as bash's do (the
	// interpreter's ignored it), and take bash's options.
	{"echo-write-error", `echo hi > /dev/full; echo "status $?"; printf 'x\n' > /dev/full; echo "status $?"`},
	{"echo-options", `echo -ne "a\tb\n"; echo -nE 'x\n'; echo; echo -n; echo -x`},
	{"printf-dashdash", `printf -- "%s-%d\n" x 3`},
	// Constructs the interpreter lacks go to bash (parser.NeedsBash).
	{"pipestatus", `false | true; echo ${PIPESTATUS[@]}`},
	{"let-quoted", `let "y = 3 * 4"; echo $y`},
	{"declare-integer", `declare -i n; n=5+5; echo $n`},
	{"printf-q", `printf '%q\n' "a b"`},
	{"printf-dashdash-q", `printf -- '%q\n' "a b"`},
	{"one-program-at-q", `echo ${HOME@Q} "${HOME@U}"`},
	{"read-loop-into-head", `seq 100000 | while read -r l; do echo "$l"; done | head -2`},
	{"ulimit", `ulimit -c 0; ulimit -c; ulimit -Sn 64; ulimit -n; grep 'Max open files' /proc/self/limits | tr -s ' ' | cut -d' ' -f4; ulimit -St 100; ulimit -t; ulimit -Sv unlimited; ulimit -v; ulimit -Sf 2048; ulimit -f; ulimit -s >/dev/null; ulimit -u >/dev/null; ulimit -n abc; echo rc=$?; ulimit -a | grep -c '(-n)'`},
}

func init() {
	for _, c := range shellLikeBash {
		oneStageFlow("like-bash-"+c.name, c.cmd)
	}
}

// oneStageFlow registers a test flow of one stage, a, running cmd.
func oneStageFlow(name, cmd string) {
	testFlows[name] = func() *parser.Graph {
		b := newGraph()
		b.stage("a", cmd)
		return b.g
	}
}

// bashC runs cmd with `bash -c` (the test skips without bash) and returns
// its output and its status as ipcflow reports a stage's: 128+N for a
// death by signal N.
func bashC(t *testing.T, cmd string) (stdout, stderr []byte, status int) {
	t.Helper()
	c := osexec.Command("bash", "-c", cmd)
	var out, errs bytes.Buffer
	c.Stdout, c.Stderr = &out, &errs
	err := c.Run()
	if errors.Is(err, osexec.ErrNotFound) {
		t.Skip("no bash to compare with")
	}
	if ee, ok := err.(*osexec.ExitError); ok {
		status = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			status = 128 + int(ws.Signal())
		}
	} else if err != nil {
		t.Fatalf("bash -c: %v", err)
	}
	return out.Bytes(), errs.Bytes(), status
}

func TestStageShellLikeBash(t *testing.T) {
	for _, c := range shellLikeBash {
		t.Run(c.name, func(t *testing.T) {
			bout, berr, bcode := bashC(t, c.cmd)
			fr := newFlowRun(t, "like-bash-"+c.name)
			code := fr.run(t)
			if code != bcode {
				t.Errorf("exit status %d, bash %d; stderr:\n%s", code, bcode, fr.stderr.Bytes())
			}
			if fr.stdout.String() != string(bout) {
				t.Errorf("stdout:\n%s\nbash:\n%s", fr.stdout.Bytes(), bout)
			}
			want := strings.ReplaceAll(string(berr), "bash: line 1: ", "")
			got := fr.stderr.String()
			if code != 0 {
				got = strings.TrimSuffix(got, fmt.Sprintf("ipcflow: stage a: exit status %d\n", code))
			}
			if got != want {
				t.Errorf("stderr:\n%s\nbash:\n%s", got, want)
			}
		})
	}
}

func init() {
	testFlows["trap-teardown"] = func() *parser.Graph {
		b := newGraph()
		b.stage("a", `trap 'echo a cleans up; exit 5' TERM; sleep 100; echo not reached`)
		b.stage("b", `trap '' TERM; sleep 1; echo b survived`)
		b.stage("bad", "sleep 0.3; exit 2")
		b.edge("b", "stderr", "")
		return b.g
	}
}

// A teardown's SIGTERM reaches a trap: a stage cleans up when the flow is
// stopped, and one that ignores SIGTERM (its programs too, as in bash)
// lives on until the grace period ends.
func TestTrapSeesTeardown(t *testing.T) {
	fr := newFlowRun(t, "trap-teardown", "--grace=5s")
	if code := fr.run(t); code != 2 {
		t.Errorf("exit status %d, want 2; stderr:\n%s", code, fr.stderr.Bytes())
	}
	if got := fr.stdout.String(); got != "a cleans up\n" {
		t.Errorf("stdout %q, want the TERM trap's line", got)
	}
	if !strings.Contains(fr.stderr.String(), "b survived\n") {
		t.Errorf("stderr %q: b did not ignore SIGTERM", fr.stderr.Bytes())
	}
	testkit.WaitNoProcs(t, fr.mark, time.Second)
}

// hereDoc is a command feeding lines of 110 bytes to filter.
func hereDoc(prefix string, lines int, filter string) string {
	var b strings.Builder
	b.WriteString(prefix + "cat <<EOF | " + filter + "\n")
	for i := range lines {
		fmt.Fprintf(&b, "%0109d\n", i)
	}
	b.WriteString("EOF")
	return b.String()
}

var longCommands = []struct{ name, cmd string }{
	{"heredoc-220k", hereDoc("", 2000, "wc -l")},
	{"heredoc-1m", hereDoc("", 9533, "sha256sum")},
	{"heredoc-bash", hereDoc("umask 077; umask; ", 2000, "wc -l")},
}

func init() {
	for _, c := range longCommands {
		oneStageFlow("long-"+c.name, c.cmd)
	}
}

// A command past MAX_ARG_STRLEN (128 KiB for one argv string) runs, in
// the stage shell and in bash, and prints what bash prints; its file in
// the run directory goes with the run (the leak check).
func TestLongCommandRuns(t *testing.T) {
	for _, c := range longCommands {
		t.Run(c.name, func(t *testing.T) {
			// bash -c would meet E2BIG too: bash reads it from a file.
			script := t.TempDir() + "/cmd.sh"
			if err := os.WriteFile(script, []byte(c.cmd), 0o600); err != nil {
				t.Fatal(err)
			}
			want, err := osexec.Command("bash", script).Output()
			if err != nil {
				t.Skipf("bash %s: %v", script, err)
			}
			fr := newFlowRun(t, "long-"+c.name)
			if code := fr.run(t); code != 0 {
				t.Fatalf("exit status %d: %s", code, fr.stderr.Bytes())
			}
			if fr.stdout.String() != string(want) {
				t.Errorf("stdout %q, bash %q", fr.stdout.String(), want)
			}
		})
	}
}

// A NUL byte in a command is refused where it is, never cut off.
func TestNULInCommandRefused(t *testing.T) {
	b := newGraph()
	st := b.stage("a", "echo ab")
	st.Command = "echo a\x00b"
	st.CommandPos = parser.Pos{Line: 3, Col: 11}
	p, err := BuildPlan(b.g, nil, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Process(p.Stages[0], FlowNames{ID: "RUNID", Dir: "RUNDIR"})
	if err == nil || err.Error() != "test.ipcflow:3:17: stage a: the command has a NUL byte" {
		t.Errorf("got %v", err)
	}
}

// The shell reads exactly the bytes it was told of, or says so.
func TestShellCommandFileLength(t *testing.T) {
	path := t.TempDir() + "/cmd"
	if err := os.WriteFile(path, []byte("echo hi"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readCommand(path, "8"); err == nil {
		t.Error("a short file was taken")
	}
	if got, err := readCommand(path, "7"); err != nil || got != "echo hi" {
		t.Errorf("got %q, %v", got, err)
	}
}

func init() {
	testFlows["exit-trap"] = func() *parser.Graph {
		b := newGraph()
		b.stage("c", `trap 'echo "trapped $?"' EXIT; (sleep 0.1; echo background) & echo body; (exit 4)`)
		return b.g
	}
}

// Background shell code is waited for (it is a goroutine of the stage
// shell and would die with it), the EXIT trap runs once, after it, and
// the command's status is kept: what bash prints, plus the background
// job's line, which bash's orphan would print after bash exits. (An
// explicit `wait` in bash would make the status 0, so bash can't be the
// reference here.)
func TestStageShellExitTrapRunsOnce(t *testing.T) {
	want := "body\nbackground\ntrapped 4\n"
	fr := newFlowRun(t, "exit-trap")
	if code := fr.run(t); code != 4 {
		t.Errorf("exit status %d, bash 4: %s", code, fr.stderr.Bytes())
	}
	if fr.stdout.String() != want {
		t.Errorf("stdout %q, want %q", fr.stdout.String(), want)
	}
}

// Signals whose default action ends a process end the stage shell as
// they end bash, whether it sends them to itself (`kill -SIG $$`) or
// another process does: not Go's goroutine dump for SEGV, ABRT and the
// like, nor its silence for USR1, ALRM and the like. SIGQUIT bash ignores.
var shellDeaths = []string{"SEGV", "ABRT", "BUS", "FPE", "TRAP", "SYS", "USR1", "USR2", "ALRM", "PROF", "VTALRM", "XCPU", "QUIT", "TERM", "INT", "HUP"}

func init() {
	for name, cmd := range shellDeathCases() {
		oneStageFlow(name, cmd)
	}
}

// shellDeathCases are the commands of TestStageShellDiesOfSignalsAsBash,
// by flow name.
func shellDeathCases() map[string]string {
	cases := map[string]string{"dies-of-USR1-from-outside": `echo pre; sh -c 'kill -USR1 $PPID'; sleep 0.5; echo after`}
	for _, sig := range shellDeaths {
		cases["dies-of-"+sig] = "echo pre; kill -" + sig + " $$; echo after"
	}
	return cases
}

func TestStageShellDiesOfSignalsAsBash(t *testing.T) {
	for name, cmd := range shellDeathCases() {
		t.Run(name, func(t *testing.T) {
			bout, _, want := bashC(t, cmd)
			fr := newFlowRun(t, name)
			if code := fr.run(t); code != want || fr.stdout.String() != string(bout) {
				t.Errorf("exit status %d, stdout %q; bash %d, %q; stderr:\n%s", code, fr.stdout.Bytes(), want, bout, fr.stderr.Bytes())
			}
			if bytes.Contains(fr.stderr.Bytes(), []byte("goroutine")) {
				t.Errorf("a goroutine dump:\n%.300s", fr.stderr.Bytes())
			}
		})
	}
}
