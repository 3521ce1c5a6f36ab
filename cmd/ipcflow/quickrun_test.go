package main

import (
	"slices"
	"testing"

	"github.com/alecthomas/kong"
)

// The quick run's list of flag variables is kong's: stages must not
// inherit IPCFLOW_GRACE whichever way the command line was read, and a
// flag variable set in the environment must send a run through kong.
func TestQuickRunMatchesKong(t *testing.T) {
	var cli runCLI
	k, err := kong.New(&cli, kong.DefaultEnvars("IPCFLOW"), kong.Vars{"version": "test"})
	if err != nil {
		t.Fatal(err)
	}
	kctx, err := k.Parse([]string{"run", "f.ipcflow"})
	if err != nil {
		t.Fatal(err)
	}
	got, want := slices.Sorted(slices.Values(runFlagEnvs)), slices.Sorted(slices.Values(flagEnvs(kctx)))
	if !slices.Equal(got, want) {
		t.Fatalf("runFlagEnvs %v, kong's %v", got, want)
	}
	if c, ok := quickRun([]string{"run", "f.ipcflow", "N=-1"}); !ok || c.File != "f.ipcflow" || !slices.Equal(c.Params, []string{"N=-1"}) || c.Grace != cli.Run.Grace {
		t.Errorf("quickRun = %+v, %v; want the file, its param and kong's default grace %v", c, ok, cli.Run.Grace)
	}
	if c, ok := quickRun([]string{"run", "-", "N=1"}); !ok || c.File != "-" { // the script on stdin is no flag
		t.Errorf("quickRun(run - N=1) = %+v, %v; want the quick path with File -", c, ok)
	}
	for _, args := range [][]string{{"run"}, {"run", "f", "--label"}, {"run", "--dry-run", "f"}, {"check", "f"}} {
		if _, ok := quickRun(args); ok {
			t.Errorf("quickRun(%q) took a command line that needs kong", args)
		}
	}
	t.Setenv("IPCFLOW_LABEL", "1")
	if _, ok := quickRun([]string{"run", "f"}); ok {
		t.Error("quickRun ignored IPCFLOW_LABEL")
	}
}
