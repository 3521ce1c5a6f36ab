package rundir

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipcflow/ipcflow/contain"
)

// A run killed together with its guardian whose directory went missing
// leaves its cgroup: clean removes it once it is empty and old enough,
// and never one of a run alive (seen in its bases, or whose ipcflow or
// guardian lives), nor one something still runs in.
func TestCleanRemovesAStrayCgroup(t *testing.T) {
	place, ok := contain.Find()
	if !ok {
		t.Skip("no cgroup this user may create here")
	}
	privateRunBase(t)
	defer func(d time.Duration) { strayCgroupAge = d }(strayCgroupAge)
	id := fmt.Sprintf("00c9%012x", os.Getpid())
	cg := filepath.Join(place.Parent, "ipcflow."+id+".procs")
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Skipf("cannot make a cgroup under %s: %v", place.Parent, err)
	}
	defer os.Remove(cg)

	var out bytes.Buffer
	if err := Clean(&out, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cg); err != nil {
		t.Fatalf("clean removed a cgroup made a moment ago (a run elsewhere may be starting):\n%s", out.String())
	}
	strayCgroupAge = 0

	// Its run alive elsewhere (another XDG_RUNTIME_DIR), between two
	// copies of a restarted stage: its group is empty, and is no stray
	// however old, while the run's ipcflow or its guardian lives.
	release := holdManifest(t, id, false)
	if err := Clean(&out, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cg); err != nil {
		t.Fatalf("clean removed the cgroup of a run whose ipcflow lives:\n%s", out.String())
	}
	release()
	stop := startFakeGuardian(t, filepath.Join(t.TempDir(), id))
	if err := Clean(&out, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cg); err != nil {
		t.Fatalf("clean removed the cgroup of a run whose guardian lives:\n%s", out.String())
	}
	stop()

	if err := Clean(&out, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cg); !os.IsNotExist(err) || !strings.Contains(out.String(), "removed cgroup "+cg) {
		t.Errorf("clean left the stray cgroup %s, or did not say so:\n%s", cg, out.String())
	}
}

// A manifest's cgroup line whose group is gone, its parent with it (a
// stage's v2 group inside the run's, which went first), is done: no
// error, where the check of the parent's file system would fail.
func TestRemoveCgroupGoneWithItsParent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ipcflow.0123456789abcdef.procs", "ipcflow.0123456789abcdef.limit-r.procs")
	if err := removeCgroup(path); err != nil {
		t.Fatal(err)
	}
	there := filepath.Join(t.TempDir(), "ipcflow.0123456789abcdef.procs")
	os.Mkdir(there, 0o755)
	if err := removeCgroup(there); err == nil || !strings.Contains(err.Error(), "not a run's cgroup") {
		t.Errorf("a group that is there, in no cgroup file system: %v; want it left in place", err)
	}
}
