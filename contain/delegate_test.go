package contain

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/internal/testkit/cgfake"
)

// fakeKernel makes contain's mkdir and rmdir those of a fake cgroup v2
// tree (cgfake) for the test.
func fakeKernel(t *testing.T, k cgfake.Kernel) {
	t.Helper()
	m, r, mv := mkdir, rmdir, moveProc
	mkdir, rmdir, moveProc = k.Mkdir, k.Rmdir, k.Move
	t.Cleanup(func() { mkdir, rmdir, moveProc = m, r, mv })
}

// Offers says yes where the parent passes the controller down already,
// or is the root and offers it; else it says why not: not offered, a
// parent with processes that does not pass it down (the no-internal-
// process rule), a run group on v1.
func TestOffersFakeTree(t *testing.T) {
	dir := t.TempDir()
	root, own, bare := filepath.Join(dir, "root"), filepath.Join(dir, "own"), filepath.Join(dir, "bare")
	must(t, cgfake.Root(root, "cpu memory pids\n", "", "1\n"))
	must(t, cgfake.Group(own, "cpu memory pids\n", "pids\n", "1\n"))
	must(t, cgfake.Root(bare, "hugetlb\n", "", ""))
	for _, c := range []struct {
		parent, ctrl string
		v            Version
		want         string // "" for yes, else a part of the reason
	}{
		{root, "memory", V2, ""},
		{root, "cpu", V2, ""},
		{own, "pids", V2, ""},
		{own, "memory", V2, "holds other processes (pid 1); run it under systemd-run --scope -p Delegate=yes"},
		{bare, "memory", V2, "offers no memory controller (its cgroup.controllers: hugetlb)"},
		{root, "memory", V1Pids, "cgroup v1"},
	} {
		err := Place{Version: c.v, Parent: c.parent}.Offers(c.ctrl)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s offers %s (v%d): %v, want %q", filepath.Base(c.parent), c.ctrl, c.v, err, c.want)
		}
	}
}

// Delegate, on a fake root that offers memory, cpu and pids but passes
// none down: the root passes down what the run needs, the run's group
// gets its leaf "stages" (where stages are born from then on: Procs
// names it) and passes the controllers down, so that a group made in it
// has memory.max and pids.max, and not cpu.max. Close kills (cgroup.kill)
// and removes the tree, children first; Remove of what is gone is quiet.
func TestDelegateFakeTree(t *testing.T) {
	fakeKernel(t, cgfake.Kernel{})
	root := filepath.Join(t.TempDir(), "root")
	must(t, cgfake.Root(root, "cpu memory pids\n", "cpu\n", "1\n"))
	p := Place{Version: V2, Parent: root}
	g, err := New(p, "ipcflow.fake.procs")
	if err != nil {
		t.Fatal(err)
	}
	if got := g.Procs(); got != filepath.Join(g.Path, "cgroup.procs") {
		t.Errorf("before Delegate, Procs = %s", got)
	}
	if err := g.Delegate([]string{"memory", "pids"}); err != nil {
		t.Fatal(err)
	}
	if on := cgfake.Fields(filepath.Join(root, "cgroup.subtree_control")); !slices.Contains(on, "memory") || !slices.Contains(on, "pids") {
		t.Errorf("the root passes down %q, want memory and pids", on)
	}
	if on := cgfake.Read(g.Path, "cgroup.subtree_control"); on != "+memory +pids" {
		t.Errorf("the run's group passes down %q, want \"+memory +pids\"", on)
	}
	leaf := filepath.Join(g.Path, LeafName)
	if got := g.Procs(); got != filepath.Join(leaf, "cgroup.procs") {
		t.Errorf("after Delegate, Procs = %s, want the leaf's", got)
	}
	var st unix.Stat_t
	if err := unix.Fstat(g.fd, &st); err != nil || !sameDir(leaf, st) {
		t.Errorf("stages are not born in the leaf %s (fd %d: %v)", leaf, g.fd, err)
	}
	stage := filepath.Join(g.Path, "ipcflow.fake.limit-r.procs")
	must(t, mkdir(stage))
	for file, want := range map[string]bool{"memory.max": true, "memory.events": true, "pids.max": true, "cpu.max": false} {
		if _, err := os.Stat(filepath.Join(stage, file)); (err == nil) != want {
			t.Errorf("a group in the run's: %s there = %v, want %v", file, err == nil, want)
		}
	}
	if !g.Holds(stage) || g.Holds(filepath.Join(root, "ipcflow.other.procs")) {
		t.Error("Holds: wrong about a group in the run's, or one beside it")
	}
	// Delegating again adds what is missing, and only that.
	if err := g.Delegate([]string{"memory", "cpu"}); err != nil {
		t.Fatal(err)
	}
	if on := cgfake.Read(g.Path, "cgroup.subtree_control"); on != "+memory +cpu" {
		t.Errorf("after a second Delegate the run's group passes down %q", on)
	}
	must(t, g.Kill())
	if got := cgfake.Read(g.Path, "cgroup.kill"); got != "1" {
		t.Errorf("Kill wrote %q to cgroup.kill, want 1", got)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(g.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the run's group is still there after Close: %v", err)
	}
	must(t, Remove(g.Path))
}

// Populated looks below the group itself: by cgroup.events where it is
// there (v2), else by each group's cgroup.procs.
func TestPopulatedFakeTree(t *testing.T) {
	fakeKernel(t, cgfake.Kernel{})
	root := filepath.Join(t.TempDir(), "root")
	must(t, cgfake.Root(root, "memory\n", "memory\n", ""))
	run := filepath.Join(root, "ipcflow.fake.procs")
	must(t, mkdir(run))
	must(t, mkdir(filepath.Join(run, LeafName)))
	for _, c := range []struct {
		events, leafProcs string
		want              bool
	}{
		{"populated 0\nfrozen 0\n", "", false},
		{"populated 1\nfrozen 0\n", "", true},
		{"", "", false}, // no cgroup.events: the walk
		{"", "4242\n", true},
	} {
		must(t, os.WriteFile(filepath.Join(run, LeafName, "cgroup.procs"), []byte(c.leafProcs), 0o644))
		os.Remove(filepath.Join(run, "cgroup.events"))
		if c.events != "" {
			must(t, os.WriteFile(filepath.Join(run, "cgroup.events"), []byte(c.events), 0o644))
		}
		if got, err := Populated(run); err != nil || got != c.want {
			t.Errorf("events %q, leaf's procs %q: Populated = %v, %v; want %v", c.events, c.leafProcs, got, err, c.want)
		}
	}
}

// Delegate refuses a group on v1.
func TestDelegateRefusesV1(t *testing.T) {
	g := &Group{Version: V1Pids, Path: t.TempDir(), fd: -1}
	if err := g.Delegate([]string{"memory"}); err == nil {
		t.Fatal("Delegate on a v1 group: no error")
	}
}

// On this kernel's own v2 hierarchy, with any controller it offers the
// run's group (hugetlb, on these machines, whose v2 has nothing else):
// after Delegate, a stage is born in the leaf, the run's group holds no
// process and refuses one (the kernel's no-internal-process rule, which
// is why the leaf exists), a group made in it has the controller, a
// stage moves into it, and Close kills everything and removes the tree.
// Skips, saying why, where v2 offers the run's group no controller.
func TestDelegateOnThisKernel(t *testing.T) {
	p, ok := Find()
	if !ok || p.Version != V2 {
		t.Skip("no cgroup v2 place this user may write here")
	}
	ctrl := ""
	offered, _ := readList(filepath.Join(p.Parent, "cgroup.controllers"))
	for _, c := range offered {
		if p.Offers(c) == nil {
			ctrl = c
			break
		}
	}
	if ctrl == "" {
		t.Skipf("cgroup v2 offers the run's group no controller here (%s/cgroup.controllers: %q)", p.Parent, offered)
	}
	// Delegate leaves the parent passing the controller down (other runs
	// may count on it); the test puts it back as it found it.
	before, _ := readList(filepath.Join(p.Parent, "cgroup.subtree_control"))
	if !slices.Contains(before, ctrl) {
		t.Cleanup(func() { WriteControl(filepath.Join(p.Parent, "cgroup.subtree_control"), []byte("-"+ctrl)) })
	}
	// Where the test's own group is not the root but is delegated to it
	// (the VM's, internal/testkit/cgfake/v2vm.sh), it leaves it first,
	// as a run does, and comes back at the end.
	if p.NeedsLeaf([]string{ctrl}) {
		leaf, err := Leave(p, "ipcflow.test"+strconv.Itoa(os.Getpid())+"."+SelfSuffix)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := Rejoin(leaf); err != nil {
				t.Error(err)
			}
		})
	}
	g, err := New(p, "ipcflow.test"+strconv.Itoa(os.Getpid())+".procs")
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Delegate([]string{ctrl}); err != nil {
		t.Fatal(err)
	}
	attr := &syscall.SysProcAttr{Setpgid: true}
	pid, err := g.Spawn(attr, func() (int, error) {
		return syscall.ForkExec("/bin/sleep", []string{"sleep", "300"}, &syscall.ProcAttr{Files: []uintptr{0, 1, 2}, Sys: attr})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Wait4(pid, nil, 0, nil)
	self := []byte(strconv.Itoa(pid))
	if members, _ := os.ReadFile(g.Procs()); !bytes.Equal(bytes.TrimSpace(members), self) {
		t.Errorf("the leaf holds %q, want the stage %d", members, pid)
	}
	if members, _ := os.ReadFile(filepath.Join(g.Path, "cgroup.procs")); len(members) > 0 {
		t.Errorf("the run's group holds processes itself: %q", members)
	}
	if err := WriteControl(filepath.Join(g.Path, "cgroup.procs"), self); !errors.Is(err, unix.EBUSY) {
		t.Errorf("moving the stage into the run's group itself: %v, want EBUSY (no internal processes)", err)
	}
	child := filepath.Join(g.Path, "ipcflow.test.limit-s.procs")
	must(t, mkdir(child))
	if got, _ := readList(filepath.Join(child, "cgroup.controllers")); !slices.Contains(got, ctrl) {
		t.Errorf("a group in the run's has controllers %q, want %s", got, ctrl)
	}
	must(t, WriteControl(filepath.Join(child, "cgroup.procs"), self))
	if members, _ := os.ReadFile(filepath.Join(child, "cgroup.procs")); !bytes.Equal(bytes.TrimSpace(members), self) {
		t.Errorf("the stage's own group holds %q, want %d", members, pid)
	}
	if populated, err := Populated(g.Path); err != nil || !populated {
		t.Errorf("Populated of the run's group, its stage in a group below it: %v, %v; want true", populated, err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil || ws.Signal() != unix.SIGKILL {
		t.Errorf("the stage in the run's subtree: %v, %v; want killed", ws, err)
	}
	if _, err := os.Stat(g.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the run's group is still there after Close: %v", err)
	}
}

func sameDir(path string, st unix.Stat_t) bool {
	var want unix.Stat_t
	return unix.Stat(path, &want) == nil && want.Ino == st.Ino && want.Dev == st.Dev
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
