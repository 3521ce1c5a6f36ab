package exec

import (
	"testing"
	"time"

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
	waitNoProcs(t, fr.mark, time.Second)
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
	waitNoProcs(t, fr.mark, 200*time.Millisecond)
}
