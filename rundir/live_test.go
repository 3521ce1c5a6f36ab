package rundir

import (
	"os"
	"path/filepath"
	"testing"
)

// Live names the runs whose lock is held, with their pids, and none that
// is dead, half made or not a run at all.
func TestLive(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir()) // not the fallback base, where others' runs live
	base := privateRunBase(t)
	if got := Live(); len(got) != 0 {
		t.Fatalf("Live() with no runs = %v", got)
	}
	r, err := Create()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Remove()
	dead, err := Create()
	if err != nil {
		t.Fatal(err)
	}
	dead.manifest.Close() // its lock goes: a crashed run
	defer os.RemoveAll(dead.Path)
	if err := os.Mkdir(filepath.Join(base, "not-a-run"), 0o700); err != nil {
		t.Fatal(err)
	}
	got := Live()
	if len(got) != 1 || got[0].ID != r.ID || got[0].Dir != r.Path || got[0].PID != os.Getpid() {
		t.Fatalf("Live() = %+v; want only run %s (pid %d)", got, r.ID, os.Getpid())
	}
	if err := r.Remove(); err != nil {
		t.Fatal(err)
	}
	if got := Live(); len(got) != 0 {
		t.Fatalf("Live() after the run ended = %+v", got)
	}
}
