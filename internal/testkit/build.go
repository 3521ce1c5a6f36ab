package testkit

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// ModuleRoot is the directory of ipcflow's go.mod (go env GOMOD), or
// fails the test.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("find the module root: %v", err)
	}
	return root
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

var build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// BuildIpcflow builds the real ipcflow command from the module's
// ./cmd/ipcflow, once per test process, and returns its path: for
// end-to-end tests of the binary as users run it (its exit statuses under
// signals, ulimits, closed stdio, other users, the examples). It is built
// static (CGO_ENABLED=0), as the README installs it: a cgo runtime's own
// threads die with an abort under a low ulimit -u. A package whose tests
// call it calls RemoveIpcflowBuild from its TestMain after m.Run.
//
// This is the one way the tests build the binary. cmd/ipcflow's own tests
// do not build it: they test the command line in-process, with txtar
// scripts run by testscript, which runs the test binary as `ipcflow`
// (main_test.go's TestMain). Each has its job: testscript for scripting
// the command line, BuildIpcflow for the real binary.
func BuildIpcflow(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			build.err = err
			return
		}
		build.dir, build.err = os.MkdirTemp("", "ipcflow-test-bin-")
		if build.err != nil {
			return
		}
		build.path = filepath.Join(build.dir, "ipcflow")
		cmd := exec.Command("go", "build", "-o", build.path, "./cmd/ipcflow")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = &buildError{err, string(out)}
		}
	})
	if build.err != nil {
		t.Fatalf("build ipcflow: %v", build.err)
	}
	return build.path
}

// RemoveIpcflowBuild removes what BuildIpcflow built, if it built
// anything.
func RemoveIpcflowBuild() {
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }
