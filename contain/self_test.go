package contain

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ipcflow/ipcflow/internal/testkit/cgfake"
)

// fakeDelegated lays out a fake hierarchy whose root offers and passes
// down memory, cpu and pids, with ipcflow's own group P below it holding
// procs; it returns P's place.
func fakeDelegated(t *testing.T, procs ...int) Place {
	t.Helper()
	fakeKernel(t, cgfake.Kernel{})
	root := filepath.Join(t.TempDir(), "root")
	must(t, cgfake.Root(root, "cpu memory pids\n", "cpu memory pids\n", "1\n"))
	var lines []string
	for _, p := range procs {
		lines = append(lines, strconv.Itoa(p)+"\n")
	}
	own := filepath.Join(root, "deleg")
	must(t, cgfake.Group(own, "cpu memory pids\n", "", strings.Join(lines, "")))
	return Place{Version: V2, Parent: own}
}

// child starts a process of the test's (ipcflow's guardian, as it were)
// and returns its pid.
func child(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	must(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

func pids(dir string) []int {
	var out []int
	for _, f := range strings.Fields(cgfake.Read(dir, "cgroup.procs")) {
		n, _ := strconv.Atoi(f)
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// A delegated group that holds ipcflow and its guardian alone: Offers
// says yes, the run needs a leaf; Leave moves both into
// ipcflow.<run>.self and leaves P empty, so the run's group can be made
// and P pass the controllers down (Delegate); a stage's group gets
// memory.max. At the end the run's group goes, then Rejoin: P stops
// passing controllers down (else the move back would be refused: the
// fake refuses it as the kernel does), both go back to P, the leaf goes.
func TestLeaveDelegatedGroup(t *testing.T) {
	self, guard := os.Getpid(), child(t)
	p := fakeDelegated(t, self, guard)
	// At plan time (no guardian yet), ipcflow's child is another
	// process: a shell's that exec'd ipcflow may have left it one.
	if err := p.Offers("memory"); err == nil {
		t.Error("Offers memory in a group that holds a child ipcflow did not start: yes")
	}
	if err := p.delegated(guard); err != nil {
		t.Fatalf("a delegated group held by ipcflow and its guardian alone: %v", err)
	}
	if !p.NeedsLeaf([]string{"memory", "pids"}) {
		t.Fatal("NeedsLeaf: false for a non-root group that passes nothing down")
	}
	leaf, err := Leave(p, "ipcflow.fake."+SelfSuffix, guard)
	if err != nil {
		t.Fatal(err)
	}
	if leaf != filepath.Join(p.Parent, "ipcflow.fake.self") || !IsSelf(leaf) {
		t.Errorf("leaf %s", leaf)
	}
	want := []int{self, guard}
	slices.Sort(want)
	if got := pids(leaf); !slices.Equal(got, want) {
		t.Errorf("the leaf holds %v, want ipcflow and its guardian %v", got, want)
	}
	if got := pids(p.Parent); len(got) > 0 {
		t.Errorf("ipcflow's group still holds %v after Leave", got)
	}
	g, err := New(p, "ipcflow.fake.procs")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Delegate([]string{"memory", "pids"}); err != nil {
		t.Fatal(err)
	}
	if on := cgfake.Fields(filepath.Join(p.Parent, "cgroup.subtree_control")); !slices.Contains(on, "memory") || !slices.Contains(on, "pids") {
		t.Errorf("ipcflow's group passes down %q, want memory and pids", on)
	}
	stage := filepath.Join(g.Path, "ipcflow.fake.limit-r.procs")
	must(t, mkdir(stage))
	if _, err := os.Stat(filepath.Join(stage, "memory.max")); err != nil {
		t.Errorf("a stage's group has no memory.max: %v", err)
	}
	// While the run's group passes memory down, Rejoin cannot undo P's
	// (the kernel's EBUSY; here: the move back is refused).
	must(t, g.Close())
	if err := Rejoin(leaf); err != nil {
		t.Fatal(err)
	}
	if on := cgfake.Fields(filepath.Join(p.Parent, "cgroup.subtree_control")); len(on) > 0 {
		t.Errorf("ipcflow's group still passes down %q after Rejoin", on)
	}
	if got := pids(p.Parent); !slices.Equal(got, want) {
		t.Errorf("ipcflow's group holds %v after Rejoin, want %v", got, want)
	}
	if _, err := os.Stat(leaf); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the leaf is still there after Rejoin: %v", err)
	}
	must(t, Rejoin(leaf)) // gone: quiet
}

// A group shared with a process that is not ipcflow's (pid 1, as a login
// shell in a session scope): Offers says why not, naming the group, the
// process and the way out; Leave moves nothing and makes no leaf.
func TestLeaveSharedGroup(t *testing.T) {
	self := os.Getpid()
	p := fakeDelegated(t, self, 1)
	err := p.Offers("memory")
	var de *DelegationError
	if !errors.As(err, &de) || !slices.Equal(de.Others, []int{1}) {
		t.Fatalf("Offers memory in a shared group: %v, want a DelegationError naming pid 1", err)
	}
	for _, want := range []string{"ipcflow's group " + p.Parent + " holds other processes (pid 1)", "systemd-run --scope -p Delegate=yes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Offers: %q, want it to say %q", err, want)
		}
	}
	if _, err := Leave(p, "ipcflow.fake."+SelfSuffix); !errors.As(err, &de) {
		t.Errorf("Leave of a shared group: %v, want a DelegationError", err)
	}
	if _, err := os.Stat(filepath.Join(p.Parent, "ipcflow.fake.self")); !errors.Is(err, os.ErrNotExist) {
		t.Error("Leave of a shared group made the leaf")
	}
	if got := pids(p.Parent); !slices.Equal(got, []int{1, self}) && !slices.Equal(got, []int{self, 1}) {
		t.Errorf("Leave of a shared group moved something: the group holds %v", got)
	}
}

// A group that passes the controllers down already needs no leaf, nor
// does the root; an empty leaf beside another run's group is removed
// without touching the parent's controllers (the other run uses them).
func TestLeafNotNeededAndEmptyRejoin(t *testing.T) {
	p := fakeDelegated(t)
	must(t, os.WriteFile(filepath.Join(p.Parent, "cgroup.subtree_control"), []byte("memory pids\n"), 0o644))
	if p.NeedsLeaf([]string{"memory"}) {
		t.Error("NeedsLeaf: true where the group passes memory down already")
	}
	if (Place{Version: V2, Parent: filepath.Dir(p.Parent)}).NeedsLeaf([]string{"memory"}) {
		t.Error("NeedsLeaf: true for the root")
	}
	leaf := filepath.Join(p.Parent, "ipcflow.old.self")
	must(t, mkdir(leaf))
	must(t, mkdir(filepath.Join(p.Parent, "ipcflow.other.procs")))
	must(t, Rejoin(leaf))
	if _, err := os.Stat(leaf); !errors.Is(err, os.ErrNotExist) {
		t.Error("an empty leaf is still there after Rejoin")
	}
	if on := cgfake.Read(p.Parent, "cgroup.subtree_control"); on != "memory pids" {
		t.Errorf("Rejoin of an empty leaf beside another run's group changed the parent's controllers: %q", on)
	}
}
