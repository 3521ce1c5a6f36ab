package exec

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMain lets the test binary stand in for ipcflow's internal roles (the
// guardian, a stage's shell), which internalCommand starts as copies of
// this binary, and adds the tests' own helper roles (testRoles).
func TestMain(m *testing.M) {
	testRoles = map[string]func(args []string) int{
		"testflow":     testFlowRole, // graph_test.go
		"test-fakerun": fakeRunRole,  // guard_test.go
	}
	if code, ok := RunInternal(os.Args); ok {
		os.Exit(code)
	}
	roomForQueues()
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// ipcflowBinary builds the real ipcflow command once per test run and
// returns its path, for end-to-end tests.
func ipcflowBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			binErr = err
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		binDir, binErr = os.MkdirTemp("", "ipcflow-test-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "ipcflow")
		// Static, as the README installs it: no cgo runtime, whose own
		// threads die with an abort under a low ulimit -u.
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/ipcflow")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = &buildError{err, string(out)}
		}
	})
	if binErr != nil {
		t.Fatalf("build ipcflow: %v", binErr)
	}
	return binPath
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

// roomForQueues raises this process's RLIMIT_MSGQUEUE (its runs inherit
// it) where it may (root): the limit is checked against all of the user's
// queues, and go test runs the channels tests, which make many, at the
// same time as these. A random graph with an mq edge then failed now and
// then with "RLIMIT_MSGQUEUE (819200 bytes) is used up", which is the
// right answer to a user whose budget is used up, and no news here. The
// tests of ulimit -q set their own limit.
func roomForQueues() {
	want := uint64(16 << 20)
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_MSGQUEUE, &rl) != nil || rl.Cur >= want {
		return
	}
	rl.Cur = want
	if rl.Max < want {
		rl.Max = want // only root may raise the hard limit; others keep theirs
	}
	unix.Setrlimit(unix.RLIMIT_MSGQUEUE, &rl)
}
