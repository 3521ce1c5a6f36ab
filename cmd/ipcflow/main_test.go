package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets testscript run this test binary as the `ipcflow` command
// (testscript.Main copies it into a directory it puts first in $PATH and
// runs main when it is started under that name).
// The command line is tested here, in-process; the real binary, built as
// users install it, is tested end to end in exec's tests
// (testkit.BuildIpcflow).
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"ipcflow": main})
}

// TestScripts runs the command-line scripts testdata/script/{check,fmt,
// graph,cli}_*.txtar. The run_ and lock_ scripts need commands of their
// own and have their own runners (run_test.go, lock_test.go).
//
// Each script gets a private $HOME and keeps the caller's $PATH. Condition
// [exec:dot] (testscript's own) tells whether Graphviz is installed.
func TestScripts(t *testing.T) {
	var files []string
	for _, p := range []string{"check", "fmt", "graph", "cli"} {
		m, _ := filepath.Glob(filepath.Join("testdata", "script", p+"_*.txtar"))
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatal("no scripts in testdata/script")
	}
	if _, err := exec.LookPath("dot"); err != nil {
		t.Log("graphviz is not installed: graph_* scripts skip their dot -Tsvg steps")
	}
	testscript.Run(t, testscript.Params{
		Files: files,
		Setup: func(env *testscript.Env) error {
			home := filepath.Join(env.WorkDir, ".home")
			env.Setenv("HOME", home)
			env.Setenv("NO_COLOR", "1")
			return os.Mkdir(home, 0o700)
		},
	})
}
