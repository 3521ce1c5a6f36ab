package contain

// ipcflow's own leaf, on cgroup v2, where ipcflow's group is delegated to
// it. A group P that holds processes cannot pass a controller down (the
// no-internal-process rule), and the common P is not the root: a systemd
// scope. Where P is ipcflow's to manage, that is, ipcflow may write P's
// cgroup.procs and cgroup.subtree_control, and P holds ipcflow and its
// guardian and nothing else (`systemd-run --scope -p
// Delegate=yes ipcflow run ...`, a container whose init is ipcflow),
// ipcflow does what a delegated service must: it moves itself and its
// children into a leaf of P, so that P holds no process and may pass the
// controllers down to the run's group (a child of ipcflow's it did not
// start, one a shell left it by exec'ing ipcflow, counts as another
// process: it may be anyone's to manage):
//
//	P  ipcflow's own cgroup, delegated: no process once Leave ran
//	├─ ipcflow.<run>.self   ipcflow and its guardian (Leave)
//	└─ ipcflow.<run>.procs  the run's group (New, Delegate), as elsewhere
//
// At the end (or, after a crash, in the guardian's reclaim) Rejoin stops
// P passing controllers down, moves whoever is in the leaf back to P and
// removes the leaf: P is as it was. Where P holds other processes (a
// login shell's session scope), nothing is moved: a process ipcflow does
// not own must not be moved out from under whoever manages it, and the
// limits go to v1 or setrlimit (Offers says why, for --dry-run).

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// SelfSuffix ends the name of ipcflow's own leaf, after the run's
// prefix: ipcflow.<run>.self.
const SelfSuffix = "self"

// moveProc moves process pid into the cgroup dir: the kernel's, but for
// the tests (cgfake's Kernel.Move).
var moveProc = func(dir string, pid int) error {
	return WriteControl(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)))
}

// selfPid is ipcflow's pid, as Leave and Offers count processes (a
// variable for the tests).
var selfPid = os.Getpid

// DelegationError says why ipcflow's own v2 group cannot be left for a
// leaf: it is not delegated to ipcflow, or other processes share it.
type DelegationError struct {
	Group  string // ipcflow's own cgroup directory
	Others []int  // processes in it that are neither ipcflow nor its children
	Err    error  // else: what ipcflow may not write
}

func (e *DelegationError) Error() string {
	var why string
	if len(e.Others) > 0 {
		pids := make([]string, 0, 3)
		for i, p := range e.Others {
			if i == 3 {
				pids = append(pids, "...")
				break
			}
			pids = append(pids, strconv.Itoa(p))
		}
		why = fmt.Sprintf("ipcflow's group %s holds other processes (pid %s)", e.Group, strings.Join(pids, " "))
	} else {
		why = fmt.Sprintf("ipcflow's group %s is not delegated to it (%v)", e.Group, e.Err)
	}
	return why + "; run it under systemd-run --scope -p Delegate=yes"
}

func (e *DelegationError) Unwrap() error { return e.Err }

// delegated returns nil where ipcflow may leave p.Parent (a non-root v2
// group) for a leaf of its own: it may make groups in it and write its
// cgroup.procs and cgroup.subtree_control, and every process in it is
// ipcflow or one of keep (its guardian).
func (p Place) delegated(keep ...int) error {
	for _, f := range []string{"", "cgroup.procs", "cgroup.subtree_control"} {
		if err := unix.Access(filepath.Join(p.Parent, f), unix.W_OK); err != nil {
			return &DelegationError{Group: p.Parent, Err: fmt.Errorf("%s: %w", filepath.Join(p.Parent, f), err)}
		}
	}
	_, others, err := members(p.Parent, keep)
	if err != nil {
		return &DelegationError{Group: p.Parent, Err: err}
	}
	if len(others) > 0 {
		return &DelegationError{Group: p.Parent, Others: others}
	}
	return nil
}

// members lists the processes in the cgroup dir: ipcflow's (ipcflow and
// keep) and the others (gone ones left out).
func members(dir string, keep []int) (ours, others []int, err error) {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, nil, err
	}
	self := selfPid()
	for _, f := range strings.Fields(string(data)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		if pid == self || slices.Contains(keep, pid) {
			ours = append(ours, pid)
		} else if exists(filepath.Join("/proc", f)) {
			others = append(others, pid)
		}
	}
	return ours, others, nil
}

// NeedsLeaf says whether a run whose stages need the v2 controllers cs
// must first move ipcflow into a leaf (Leave): p's group is not the root
// and does not pass one of cs down yet.
func (p Place) NeedsLeaf(cs []string) bool {
	if p.Version != V2 || len(cs) == 0 || isRoot(p.Parent) {
		return false
	}
	on, err := readList(filepath.Join(p.Parent, "cgroup.subtree_control"))
	if err != nil {
		return false
	}
	for _, c := range cs {
		if !slices.Contains(on, c) {
			return true
		}
	}
	return false
}

// Leave moves ipcflow and keep (its guardian) from p's group into the
// leaf name it makes there, once it checked again that no other process
// is in the group (a child being forked meanwhile would be left behind:
// the caller starts none). Should a move fail, those moved go back and
// the leaf is removed. It returns the leaf's directory.
func Leave(p Place, name string, keep ...int) (string, error) {
	if err := p.delegated(keep...); err != nil {
		return "", err
	}
	leaf := p.Path(name)
	if err := mkdir(leaf); err != nil {
		return "", fmt.Errorf("create cgroup %s: %w", leaf, err)
	}
	ours, _, err := members(p.Parent, keep)
	if err == nil {
		// The guardian first, ipcflow last.
		self := selfPid()
		slices.SortFunc(ours, func(a, b int) int {
			if (a == self) != (b == self) {
				if a == self {
					return 1
				}
				return -1
			}
			return a - b
		})
		var moved []int
		for _, pid := range ours {
			if err = moveProc(leaf, pid); err != nil && !errors.Is(err, unix.ESRCH) {
				err = fmt.Errorf("move process %d into %s: %w", pid, leaf, err)
				break
			}
			err = nil
			moved = append(moved, pid)
		}
		if err != nil {
			for _, pid := range moved {
				moveProc(p.Parent, pid)
			}
		}
	}
	if err != nil {
		rmdir(leaf)
		return "", err
	}
	return leaf, nil
}

// IsSelf says whether path names an ipcflow leaf (Leave's), by its name.
func IsSelf(path string) bool {
	return strings.HasSuffix(filepath.Base(path), "."+SelfSuffix)
}

// Rejoin undoes Leave for the leaf at path: its parent P stops passing
// controllers down (no group of a run may be left in P that uses them:
// the kernel refuses, EBUSY, while a child passes them further down),
// whoever is in the leaf goes back to P, and the leaf is removed. Nothing
// is killed: the leaf holds ipcflow, its guardian, and whatever else
// ipcflow started outside the run's group. A leaf already gone is not an
// error.
func Rejoin(path string) error {
	if _, err := os.Stat(filepath.Join(path, "cgroup.procs")); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	parent := filepath.Dir(path)
	data, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
	if err != nil {
		return fmt.Errorf("list cgroup %s: %w", path, err)
	}
	pids := strings.Fields(string(data))
	if len(pids) > 0 || onlyChild(parent, path) {
		// An empty leaf with siblings (another run's) leaves P as it is.
		if on, err := readList(filepath.Join(parent, "cgroup.subtree_control")); err == nil && len(on) > 0 {
			words := make([]string, len(on))
			for i, c := range on {
				words[i] = "-" + c
			}
			if err := WriteControl(filepath.Join(parent, "cgroup.subtree_control"), []byte(strings.Join(words, " "))); err != nil && len(pids) > 0 {
				return fmt.Errorf("stop %s passing %s down: %w", parent, strings.Join(on, ", "), err)
			}
		}
	}
	var errs []error
	for _, f := range pids {
		pid, _ := strconv.Atoi(f)
		if err := moveProc(parent, pid); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("move process %d back to %s: %w", pid, parent, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := rmdir(path); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove cgroup %s: %w", path, err)
	}
	return nil
}

// onlyChild says whether child is the one group in parent.
func onlyChild(parent, child string) bool {
	ents, err := os.ReadDir(parent)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if e.IsDir() && e.Name() != filepath.Base(child) {
			return false
		}
	}
	return true
}
