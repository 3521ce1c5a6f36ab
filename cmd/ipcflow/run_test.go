package main

import (
	"errors"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestRunScripts runs testdata/script/run_*.txtar: `ipcflow run` end to
// end through the command line (flags, params, check errors, exit
// statuses). Each script gets a private XDG_RUNTIME_DIR, `nothingleft`
// checks that no run directory is left in it, and `status N CMD...` checks
// a command's exact exit status.
func TestRunScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/script/run_*.txtar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no run scripts: %v", err)
	}
	bin := ipcflowOnPath(t)
	testscript.Run(t, testscript.Params{
		Files: files,
		Setup: func(env *testscript.Env) error {
			env.Setenv("PATH", bin+string(os.PathListSeparator)+env.Getenv("PATH"))
			env.Setenv(asIpcflowEnv, "1")
			rt := filepath.Join(env.WorkDir, ".runtime")
			env.Setenv("XDG_RUNTIME_DIR", rt)
			return os.Mkdir(rt, 0o700)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// status N CMD ARGS...: run CMD (stdout and stderr kept for
			// the next stdout/stderr check) and want exit status N.
			"status": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) < 2 {
					ts.Fatalf("usage: status N CMD ARGS...")
				}
				want, err := strconv.Atoi(args[0])
				ts.Check(err)
				code := 0
				if err := ts.Exec(args[1], args[2:]...); err != nil {
					var ee *osexec.ExitError
					if !errors.As(err, &ee) {
						ts.Fatalf("%s: %v", args[1], err)
					}
					code = ee.ExitCode()
				}
				if code != want {
					ts.Fatalf("exit status %d, want %d", code, want)
				}
			},
			"nothingleft": func(ts *testscript.TestScript, neg bool, args []string) {
				ents, _ := os.ReadDir(filepath.Join(ts.Getenv("XDG_RUNTIME_DIR"), "ipcflow"))
				if len(ents) > 0 {
					ts.Fatalf("run directories left: %v", ents)
				}
			},
		},
	})
}
