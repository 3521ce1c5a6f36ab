package exec

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/internal/testkit"
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
	testkit.RemoveIpcflowBuild()
	removeNativeTools() // native_test.go
	os.Exit(code)
}

// roomForQueues raises this process's RLIMIT_MSGQUEUE (its runs inherit
// it) where it may (with CAP_SYS_RESOURCE, which root lacks on some
// machines, this one among them): the limit is checked against all of the
// user's queues, and go test runs the channels tests, which make many, at
// the same time as these. A run with mq edges then failed now and then
// with "RLIMIT_MSGQUEUE (819200 bytes) is used up", which is the right
// answer to a user whose budget is used up, and no news here (the random
// graphs run such a run again). The tests of ulimit -q set their own limit.
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
