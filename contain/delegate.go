package contain

// Groups below the run's own, on cgroup v2, for package isolate: a
// limited stage's group must be a child of a group that holds no process
// of its own and passes the controller down (cgroup v2's
// no-internal-process rule: only the hierarchy's root may do both). So:
//
//	P  ipcflow's own cgroup (ipcflow, its guardian, maybe its shell)
//	└─ R  the run's group (Find/New): no process once Delegate ran;
//	   │  its cgroup.subtree_control passes the controllers down
//	   ├─ stages  the leaf every stage is born in (CLONE_INTO_CGROUP)
//	   └─ ipcflow.<run>.limit-<stage>.procs  a limited stage's (isolate)
//
// R gets a controller only if P passes it down. P holds ipcflow, so P may
// start passing a controller down only where it is the hierarchy's root
// (the root alone is exempt from the rule), or once ipcflow moved itself
// and its guardian out of P into a leaf of their own, where P is
// delegated to ipcflow and holds nothing else (self.go); elsewhere it
// must already (for memory, never: a non-root group with processes
// cannot pass a domain controller down). Offers says which, before
// anything is made.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// LeafName is the group, inside the run's, that the run's stages are
// born in once Delegate ran.
const LeafName = "stages"

// Offers says whether a run's group made at p can pass the v2 controller
// c (memory, cpu, pids) down to groups of its own: nil when it can (c
// already passed down to it; or its parent offers c and is the root, or
// is delegated to ipcflow and holds ipcflow alone, which then leaves it
// for a leaf: self.go), else why not, in words (a *DelegationError where
// only the delegation is missing).
func (p Place) Offers(c string) error {
	if p.Version != V2 {
		return fmt.Errorf("the run's cgroup is in cgroup v1 (%s), not v2", p.Parent)
	}
	enabled, err := readList(filepath.Join(p.Parent, "cgroup.subtree_control"))
	if err != nil {
		return err
	}
	if slices.Contains(enabled, c) {
		return nil
	}
	offered, err := readList(filepath.Join(p.Parent, "cgroup.controllers"))
	if err != nil {
		return err
	}
	if !slices.Contains(offered, c) {
		have := strings.Join(offered, " ")
		if have == "" {
			have = "none"
		}
		return fmt.Errorf("%s offers no %s controller (its cgroup.controllers: %s)", p.Parent, c, have)
	}
	if !isRoot(p.Parent) {
		// P holds ipcflow: it can pass c down only once ipcflow left it
		// for a leaf of its own (self.go), where P is delegated to it.
		return p.delegated()
	}
	if err := unix.Access(filepath.Join(p.Parent, "cgroup.subtree_control"), unix.W_OK); err != nil {
		return fmt.Errorf("%s/cgroup.subtree_control: %w", p.Parent, err)
	}
	return nil
}

// isRoot says whether dir is the root of its cgroup v2 hierarchy: the
// root alone has no cgroup.type.
func isRoot(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "cgroup.type"))
	return errors.Is(err, os.ErrNotExist)
}

// Delegate readies the run's v2 group to hold groups of its own with the
// controllers cs: the parent passes them down where it does not yet (it
// stays so: other runs may count on it), the stages to come are born in
// the leaf "stages" instead of the group itself, and the group passes cs
// down. It must run before any stage starts; calling it again adds
// controllers.
func (g *Group) Delegate(cs []string) error {
	if g.Version != V2 {
		return fmt.Errorf("cgroup %s is not in cgroup v2", g.Path)
	}
	if err := enable(filepath.Dir(g.Path), cs); err != nil {
		return err
	}
	if g.leaf == "" {
		leaf := filepath.Join(g.Path, LeafName)
		if err := mkdir(leaf); err != nil {
			return fmt.Errorf("create cgroup %s: %w", leaf, err)
		}
		fd, err := unix.Open(leaf, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			rmdir(leaf)
			return fmt.Errorf("open cgroup %s: %w", leaf, err)
		}
		if g.fd >= 0 {
			unix.Close(g.fd)
		}
		g.fd, g.leaf = fd, leaf
	}
	return enable(g.Path, cs)
}

// enable writes the controllers of cs that dir does not pass down yet to
// its cgroup.subtree_control ("+memory +pids": all of cs, which the
// kernel takes for a no-op where one is on already).
func enable(dir string, cs []string) error {
	file := filepath.Join(dir, "cgroup.subtree_control")
	on, err := readList(file)
	if err != nil {
		return err
	}
	missing := false
	var words []string
	for _, c := range cs {
		missing = missing || !slices.Contains(on, c)
		words = append(words, "+"+c)
	}
	if !missing {
		return nil
	}
	if err := WriteControl(file, []byte(strings.Join(words, " "))); err != nil {
		return fmt.Errorf("pass %s down in %s: %w", strings.Join(cs, ", "), file, err)
	}
	return nil
}

// Procs is the cgroup.procs file that lists the run's stages not in a
// group of their own: the leaf's once Delegate ran, else the group's.
func (g *Group) Procs() string {
	if g.leaf != "" {
		return filepath.Join(g.leaf, "cgroup.procs")
	}
	return filepath.Join(g.Path, "cgroup.procs")
}

// readList reads a cgroup list file (cgroup.controllers,
// cgroup.subtree_control) as the names it holds.
func readList(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range strings.Fields(string(data)) {
		out = append(out, strings.TrimPrefix(f, "+"))
	}
	return out, nil
}

// Holds says whether the cgroup at path is in the run's group's
// hierarchy, beside the run's stages: a group of the run's own (v2), or
// a sibling of the run's group (v1's pids hierarchy, where package
// isolate makes a stage's pids group). Its members are then apart from
// the run's others, and its cgroup.procs lists them.
func (g *Group) Holds(path string) bool {
	dir := filepath.Dir(path)
	if g.Version == V2 {
		return dir == g.Path
	}
	return dir == filepath.Dir(g.Path)
}

// Populated says whether any process is in the cgroup at path or in a
// group below it (a run's group after Delegate holds none itself): v2's
// cgroup.events says so for the subtree; else each group's cgroup.procs
// is read.
func Populated(path string) (bool, error) {
	if data, err := os.ReadFile(filepath.Join(path, "cgroup.events")); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "populated "); ok {
				return v != "0", nil
			}
		}
	}
	populated := false
	err := filepath.WalkDir(path, func(dir string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			return err
		}
		if len(strings.TrimSpace(string(procs))) > 0 {
			populated = true
			return filepath.SkipAll
		}
		return nil
	})
	return populated, err
}
