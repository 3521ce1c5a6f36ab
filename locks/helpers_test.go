package locks

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipcflow/ipcflow/internal/testkit"
)

// The test binary doubles as the helper processes of the cross-process
// tests (os/exec's style): with IPCFLOW_LOCKS_HELPER set, TestMain runs the
// named helper instead of the tests.
const helperEnv = "IPCFLOW_LOCKS_HELPER"

// testPrefix starts the name of every semaphore the tests make, so that the
// leak check sees only ours (other packages' tests share /dev/shm).
var testPrefix = fmt.Sprintf("ipcflowtest.%d.", os.Getpid())

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(runHelper(h, os.Args[len(os.Args)-helperArgs(h):]))
	}
	code := m.Run()
	if leaked := leakedObjects(testPrefix); len(leaked) > 0 {
		fmt.Fprintf(os.Stderr, "leak check: left behind: %s\n", strings.Join(leaked, " "))
		for _, f := range leaked {
			os.Remove(f)
		}
		code = 1
	}
	os.Exit(code)
}

// leakedObjects lists the paths of the semaphores whose names begin with
// prefix (testkit.KernelObjects), and of any temporary file Create may
// have left in ShmDir.
func leakedObjects(prefix string) []string {
	found, err := testkit.KernelObjects(prefix, fmt.Sprintf(".ipcflow-sem-%d-", os.Getpid()))
	if err != nil {
		return []string{"cannot read " + ShmDir + ": " + err.Error()}
	}
	return found
}

// moreHelpers are helpers that other test files add.
var moreHelpers = map[string]func(args []string) int{}

var semSeq atomic.Int64

// testSemName returns a fresh POSIX name for this test.
func testSemName(t testing.TB) string {
	return fmt.Sprintf("/%s%s.%d", testPrefix, strings.ReplaceAll(t.Name(), "/", "_"), semSeq.Add(1))
}

// newTestSem creates a semaphore that is closed and unlinked when t ends.
func newTestSem(t testing.TB, value uint32) *Sem {
	t.Helper()
	name := testSemName(t)
	s, err := Create(name, value)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		Unlink(name)
	})
	return s
}

func helperArgs(name string) int {
	switch name {
	case "mutex":
		return 4 // NAME N LOG TAG
	case "pingpong":
		return 3 // A B N
	case "lease-hold", "lease-try":
		return 2 // SOCKET SEM
	case "create-and-wait":
		return 1 // NAME
	}
	return 0
}

// helperCmd returns a command that runs helper name with args in a child.
func helperCmd(t testing.TB, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$"}, args...)...)
	cmd.Env = append(os.Environ(), helperEnv+"="+name)
	cmd.Stderr = os.Stderr
	return cmd
}

func runHelper(name string, args []string) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "helper %s: %v\n", name, err)
		return 1
	}
	ctx := context.Background()
	switch name {
	case "mutex":
		s, err := Open(args[0])
		if err != nil {
			return fail(err)
		}
		n, _ := strconv.Atoi(args[1])
		log, err := os.OpenFile(args[2], os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return fail(err)
		}
		in, out := []byte(args[3]+"+\n"), []byte(args[3]+"-\n")
		for i := 0; i < n; i++ {
			if err := s.Wait(ctx); err != nil {
				return fail(err)
			}
			log.Write(in)
			time.Sleep(20 * time.Microsecond)
			log.Write(out)
			if err := s.Post(); err != nil {
				return fail(err)
			}
		}
		return 0
	case "pingpong":
		a, err := Open(args[0])
		if err != nil {
			return fail(err)
		}
		b, err := Open(args[1])
		if err != nil {
			return fail(err)
		}
		n, _ := strconv.Atoi(args[2])
		for i := 0; i < n; i++ {
			if err := a.Wait(ctx); err != nil {
				return fail(err)
			}
			if err := b.Post(); err != nil {
				return fail(err)
			}
		}
		return 0
	}
	if h, ok := moreHelpers[name]; ok {
		return h(args)
	}
	return fail(fmt.Errorf("unknown helper"))
}

// checkCriticalSections checks that the log of "TAG+"/"TAG-" lines never
// shows two holders at once, and returns how many sections each tag had.
func checkCriticalSections(t *testing.T, log string) map[string]int {
	t.Helper()
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	holder := ""
	for i, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		tag, mark := line[:len(line)-1], line[len(line)-1]
		switch {
		case mark == '+' && holder == "":
			holder = tag
		case mark == '-' && holder == tag:
			holder = ""
			counts[tag]++
		default:
			t.Fatalf("log line %d: %q while %q holds the semaphore: critical sections overlap", i+1, line, holder)
		}
	}
	if holder != "" {
		t.Fatalf("log ends with %q inside its critical section", holder)
	}
	return counts
}

// buildC compiles testdata/semc.c, or skips the test where gcc is missing.
func buildC(t *testing.T) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found: skipping the interoperation test with glibc's sem_open")
	}
	bin := filepath.Join(t.TempDir(), "semc")
	out, err := exec.Command(gcc, "-O2", "-pthread", "-o", bin, "testdata/semc.c").CombinedOutput()
	if err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return bin
}
