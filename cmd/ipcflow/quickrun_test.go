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
	// The measuring flags take the quick path too, with what kong would
	// have made of them.
	for _, args := range [][]string{
		{"run", "--stats", "f.ipcflow", "N=1"},
		{"run", "f.ipcflow", "--stats-json", "-", "N=1", "--monitor"},
		{"run", "--stats-json=s.json", "--stats", "f.ipcflow", "N=1"},
	} {
		var kcli runCLI
		kk, err := kong.New(&kcli, kong.DefaultEnvars("IPCFLOW"), kong.Vars{"version": "test"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kk.Parse(args); err != nil {
			t.Fatal(err)
		}
		c, ok := quickRun(args)
		if !ok {
			t.Errorf("quickRun(%q) took the slow path", args)
			continue
		}
		want := kcli.Run
		if c.File != want.File || !slices.Equal(c.Params, want.Params) || c.Stats != want.Stats ||
			c.Monitor != want.Monitor || c.StatsJSON != want.StatsJSON || c.Grace != want.Grace {
			t.Errorf("quickRun(%q) = %+v; kong made %+v", args, *c, want)
		}
	}
	for _, args := range [][]string{{"run"}, {"run", "--stats"}, {"run", "f", "--stats-json"}, {"run", "f", "--stats=false"}, {"run", "f", "--label"}, {"run", "--dry-run", "f"}, {"check", "f"}} {
		if _, ok := quickRun(args); ok {
			t.Errorf("quickRun(%q) took a command line that needs kong", args)
		}
	}
	t.Setenv("IPCFLOW_LABEL", "1")
	if _, ok := quickRun([]string{"run", "f"}); ok {
		t.Error("quickRun ignored IPCFLOW_LABEL")
	}
}
