package exec

import (
	"fmt"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/ipcflow/ipcflow/internal/testkit"
	"github.com/ipcflow/ipcflow/parser"
)

// FuzzDryRun: whatever script checks, planning its run and building each
// stage's process as `ipcflow run --dry-run` does never panics and creates
// nothing: planning decides, only Run creates. Errors are fine, but they
// are usage errors (status 2) and name where they come from. The seeds
// are testdata/fuzz/FuzzDryRun, the parser's good scripts and the
// examples, so `go test` runs them all. To fuzz:
//
//	go test ./exec -run '^$' -fuzz FuzzDryRun -fuzztime 2m
func FuzzDryRun(f *testing.F) {
	testkit.AddSeeds(f, "../parser/testdata/good/*.ipcflow", "../examples/*.ipcflow")
	home := f.TempDir()
	wd, err := os.Getwd()
	if err != nil {
		f.Fatal(err)
	}
	entries := func(dir string) []string {
		ents, _ := os.ReadDir(dir)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return names
	}
	before := entries(wd)
	f.Fuzz(func(t *testing.T, src []byte) {
		watchdog := time.AfterFunc(10*time.Second, func() {
			panic(fmt.Sprintf("FuzzDryRun: no result after 10s for %q", src))
		})
		defer watchdog.Stop()
		g, err := parser.Parse("f.ipcflow", src)
		if err != nil {
			return
		}
		// Paths in the script are relative to the working directory or
		// under $HOME (expanded): both must stay as they were.
		defer func() {
			if got := entries(home); len(got) > 0 {
				t.Fatalf("planning created %v in $HOME for:\n%s", got, src)
			}
			if got := entries(wd); !slices.Equal(got, before) {
				t.Fatalf("planning changed the working directory (%v, was %v) for:\n%s", got, before, src)
			}
		}()
		p, err := buildPlan(g, nil, []string{"HOME=" + home, "PATH=/usr/bin:/bin"}, true, false)
		if err != nil {
			if _, ok := err.(*UsageError); !ok {
				t.Fatalf("plan error is a %T, not a usage error: %v", err, err)
			}
			return
		}
		procs, err := p.Processes(FlowNames{ID: "RUNID", Dir: "RUNDIR"})
		if err != nil {
			return
		}
		p.Print(io.Discard, procs)
	})
}
