package exec

import (
	"bytes"
	"fmt"
	"os"
	osexec "os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/ipcflow/ipcflow/internal/testkit"
)

// flowRun is one run of a test flow in a child process.
type flowRun struct {
	cmd    *osexec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
	mark   string // in the environment of the run and so of every stage
	runDir string // the private XDG_RUNTIME_DIR of the run
}

// newFlowRun prepares a run of test flow name (testFlows) with its own
// run directory base and a marker variable to find its processes by.
func newFlowRun(t *testing.T, name string, args ...string) *flowRun {
	t.Helper()
	path, argv, err := internalCommand("testflow", append([]string{name}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	fr := &flowRun{runDir: t.TempDir()}
	fr.mark = fmt.Sprintf("%s-%d-%d", t.Name(), os.Getpid(), time.Now().UnixNano())
	fr.cmd = osexec.Command(path, argv[1:]...)
	fr.cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+fr.runDir, "IPCFLOW_TEST_MARK="+fr.mark)
	fr.cmd.Stdout = &fr.stdout
	fr.cmd.Stderr = &fr.stderr
	// Every run is checked for leaks when its test ends, whatever else the
	// test checks.
	t.Cleanup(testkit.LeakCheck(t, fr.runDir))
	// And whatever of it is still running (only if the test failed) goes
	// first, found by its marker.
	t.Cleanup(func() {
		for _, pid := range testkit.MarkedProcs(fr.mark) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return fr
}

// run runs the flow and returns its exit status.
func (fr *flowRun) run(t *testing.T) int {
	t.Helper()
	err := fr.cmd.Run()
	return exitCode(t, err)
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	if ee, ok := err.(*osexec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatalf("run: %v", err)
	return -1
}
