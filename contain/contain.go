// Package contain holds a run's processes in a cgroup of the run's own,
// so that all of them can be killed at once, whatever process groups and
// sessions they make: a stage's `setsid daemon &` leaves the stage's
// process group, but never its cgroup.
//
// Three ways, the first the machine allows:
//
//   - cgroup v2 (a cgroup2 mount, pure or beside v1): a child of ipcflow's
//     own cgroup; stages are started straight into it (clone3's
//     CLONE_INTO_CGROUP), and cgroup.kill kills everything in it.
//   - cgroup v1, pids controller (root, or wherever ipcflow may write): a
//     child of ipcflow's own pids group; ipcflow steps into it around each
//     fork, so that the stage is born inside, and steps back out. To kill,
//     pids.max goes to 0 (nothing new can fork) and every member is killed
//     until none is left.
//   - neither: New returns nil, and the caller falls back to process
//     groups (a stage's group, killed by group).
//
// On v2 the run's group can also hold groups of its own, with
// controllers (package isolate's, for a stage's `limit`): Delegate moves
// the run's stages into a leaf, "stages", so that the run's group holds
// no process itself (cgroup v2's no-internal-process rule), and passes
// the controllers down to its children. Offers says beforehand whether
// it can.
//
// The package knows nothing of runs: exec gives it a name and a place in
// the manifest, and `ipcflow clean` and the guardian call Remove with the
// path the manifest recorded.
package contain

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Version says which cgroup hierarchy a Group lives in.
type Version int

const (
	V1Pids Version = 1 // cgroup v1, the pids controller's hierarchy
	V2     Version = 2 // the unified hierarchy
)

// Group is one run's cgroup.
type Group struct {
	Version Version
	Path    string // the cgroup's directory
	fd      int    // V2: the directory stages are born in, open, for CLONE_INTO_CGROUP
	home    string // V1: ipcflow's own cgroup.procs, to step back into
	leaf    string // V2 after Delegate: the leaf the stages are born in
}

// mkdir and rmdir make and remove a cgroup: the kernel's, but for the
// tests, which lay out a v2 tree in a plain directory (internal/testkit/cgfake).
var (
	mkdir = func(path string) error { return unix.Mkdir(path, 0o755) }
	rmdir = unix.Rmdir
)

// Place is where New would make a group, and how: for --dry-run, which
// must say what a run gets without making anything.
type Place struct {
	Version Version
	Parent  string // the cgroup directory a group is made in
}

// prefer is what Find tries first; tests set it to exercise v1 where a
// machine has both.
var prefer = V2

// Find returns where a group can be made for this process, or ok false
// when neither hierarchy has a place ipcflow may write.
func Find() (Place, bool) {
	mounts, own, err := readCgroups()
	if err != nil {
		return Place{}, false
	}
	order := []Version{V2, V1Pids}
	if prefer == V1Pids {
		order = []Version{V1Pids, V2}
	}
	for _, v := range order {
		mnt, ok := mounts[v]
		if !ok {
			continue
		}
		rel, ok := own[v]
		if !ok {
			continue
		}
		parent := filepath.Join(mnt, rel)
		if unix.Access(parent, unix.W_OK) == nil {
			return Place{Version: v, Parent: parent}, true
		}
	}
	return Place{}, false
}

// String says in words what a run gets, for --dry-run.
func (p Place) String() string {
	if p.Version == V2 {
		return "cgroup v2 under " + p.Parent + " (cgroup.kill)"
	}
	return "cgroup v1 pids group under " + p.Parent
}

// Path is where New(p, name) makes its group.
func (p Place) Path(name string) string { return filepath.Join(p.Parent, name) }

// New makes the group name under p. It fails where the kernel refuses
// (no permission after all, no cgroup.kill and no pids.max): then the
// caller falls back to process groups.
func New(p Place, name string) (*Group, error) {
	g := &Group{Version: p.Version, Path: p.Path(name), fd: -1}
	if err := mkdir(g.Path); err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", g.Path, err)
	}
	var err error
	switch p.Version {
	case V2:
		g.fd, err = unix.Open(g.Path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	case V1Pids:
		g.home = filepath.Join(p.Parent, "cgroup.procs")
		_, err = os.Stat(filepath.Join(g.Path, "pids.max"))
	}
	if err != nil {
		rmdir(g.Path)
		return nil, fmt.Errorf("open cgroup %s: %w", g.Path, err)
	}
	return g, nil
}

// Spawn starts a process inside the group: attr gets what clone3 needs
// (V2), or ipcflow steps into the group around the fork (V1). start is the
// fork itself (syscall.ForkExec with attr).
func (g *Group) Spawn(attr *syscall.SysProcAttr, start func() (int, error)) (int, error) {
	if g.Version == V2 {
		attr.UseCgroupFD, attr.CgroupFD = true, g.fd
		defer func() { attr.UseCgroupFD, attr.CgroupFD = false, 0 }()
		return start()
	}
	self := []byte(strconv.Itoa(os.Getpid()))
	if err := WriteControl(filepath.Join(g.Path, "cgroup.procs"), self); err != nil {
		// The group would not take ipcflow (a v1 hierarchy can refuse a
		// multi-threaded process it is not allowed to move): the stage
		// starts all the same, held by its process group alone, rather
		// than not at all.
		return start()
	}
	pid, err := start()
	// Should stepping back fail, ipcflow stays counted in the run's group:
	// harmless, as kill spares ipcflow's own pid.
	WriteControl(g.home, self)
	return pid, err
}

// Kill kills every process in the group now.
func (g *Group) Kill() error { return kill(g.Path, g.Version) }

// Close kills what is left, waits (up to a second) for the group to
// empty and removes it.
func (g *Group) Close() error {
	if g.fd >= 0 {
		unix.Close(g.fd)
		g.fd = -1
	}
	return Remove(g.Path)
}

// Remove kills everything in the cgroup at path, and in the groups
// below it, and removes them all: for the run itself, for the guardian
// after a crash, and for `ipcflow clean`. A cgroup already gone is not an
// error.
func Remove(path string) error {
	v := V1Pids
	if _, err := os.Stat(filepath.Join(path, "cgroup.kill")); err == nil {
		v = V2
	} else if _, err := os.Stat(filepath.Join(path, "cgroup.procs")); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	deadline := time.Now().Add(time.Second)
	for {
		kill(path, v)
		err := removeTree(path)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", path, err)
		}
		time.Sleep(5 * time.Millisecond) // killed processes are still exiting
	}
}

// removeTree removes the cgroup at path, its children first.
func removeTree(path string) error {
	ents, err := os.ReadDir(path)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() {
			if err := removeTree(filepath.Join(path, e.Name())); err != nil && !errors.Is(err, unix.ENOENT) {
				return err
			}
		}
	}
	return rmdir(path)
}

// kill kills every member of the cgroup at path, and of the groups below
// it, but ipcflow itself.
func kill(path string, v Version) error {
	if v == V2 {
		// cgroup.kill kills the whole subtree.
		err := WriteControl(filepath.Join(path, "cgroup.kill"), []byte("1"))
		if err == nil || errors.Is(err, os.ErrNotExist) && !exists(path) {
			return nil
		}
		// No cgroup.kill (before Linux 5.14): kill member by member.
	} else {
		// No new process can fork in the group (nor below it: pids.max
		// binds the groups below) from now on, so the loop below ends.
		WriteControl(filepath.Join(path, "pids.max"), []byte("0"))
	}
	self := os.Getpid()
	for range 100 {
		killed := 0
		err := filepath.WalkDir(path, func(dir string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil // a group gone meanwhile
			}
			data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					return nil
				}
				return fmt.Errorf("list cgroup %s: %w", dir, err)
			}
			for _, f := range bytes.Fields(data) {
				if pid, err := strconv.Atoi(string(f)); err == nil && pid != self {
					unix.Kill(pid, unix.SIGKILL)
					killed++
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if killed == 0 {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("kill cgroup %s: processes are still there", path)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// WriteControl writes a cgroup's control file, which must be there: a
// controller the group lacks has no file, and the kernel makes none
// (no O_CREAT).
func WriteControl(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// readCgroups finds the cgroup2 mount and the pids controller's v1
// mount (in /proc/self/mountinfo) and this process's cgroup in each (in
// /proc/self/cgroup), as paths relative to the mount.
func readCgroups() (mounts, own map[Version]string, err error) {
	mi, cg, err := readSelfCgroups()
	if err != nil {
		return nil, nil, err
	}
	mounts, own = map[Version]string{}, map[Version]string{}
	for v, pick := range map[Version]hierarchyPick{
		V2:     {mount: func(fs, _ string) bool { return fs == "cgroup2" }, line: func(id, ctrls string) bool { return id == "0" && ctrls == "" }},
		V1Pids: {mount: func(fs, opts string) bool { return fs == "cgroup" && hasOption(opts, "pids") }, line: func(_, ctrls string) bool { return hasOption(ctrls, "pids") }},
	} {
		mnt, rel, mounted, ok := findHierarchy(mi, cg, pick)
		if mounted {
			mounts[v] = mnt
		}
		if ok {
			own[v] = rel
		}
	}
	return mounts, own, nil
}

// V1Own returns the directory of this process's own group in the cgroup
// v1 hierarchy of controller (memory, cpu, pids), when this user may
// make groups in it: where package isolate makes a stage's.
func V1Own(controller string) (string, bool) {
	mi, cg, err := readSelfCgroups()
	if err != nil {
		return "", false
	}
	mnt, rel, _, ok := findHierarchy(mi, cg, hierarchyPick{
		mount: func(fs, opts string) bool { return fs == "cgroup" && hasOption(opts, controller) },
		line:  func(_, ctrls string) bool { return hasOption(ctrls, controller) },
	})
	dir := filepath.Join(mnt, rel)
	if !ok || unix.Access(dir, unix.W_OK) != nil {
		return "", false
	}
	return dir, true
}

// readSelfCgroups reads /proc/self/mountinfo and /proc/self/cgroup.
func readSelfCgroups() (mountinfo, cgroup []byte, err error) {
	if mountinfo, err = os.ReadFile("/proc/self/mountinfo"); err != nil {
		return nil, nil, err
	}
	cgroup, err = os.ReadFile("/proc/self/cgroup")
	return mountinfo, cgroup, err
}

// hierarchyPick tells one cgroup hierarchy: its mount in mountinfo (by
// file system type and super options) and its line in /proc/PID/cgroup
// (by hierarchy id and controllers).
type hierarchyPick struct {
	mount func(fstype, superopts string) bool
	line  func(id, controllers string) bool
}

// findHierarchy finds pick's first mount in mountinfo (mounted) and this
// process's group in it from cgroup, relative to the mount (ok): relative
// to the mount's root, since a container sees its own cgroup as the
// mount's root.
func findHierarchy(mountinfo, cgroup []byte, pick hierarchyPick) (mnt, rel string, mounted, ok bool) {
	var root string
	for _, line := range strings.Split(string(mountinfo), "\n") {
		// id parent major:minor root mountpoint opts... - fstype source superopts
		pre, post, cut := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if cut && len(f) >= 5 && len(g) >= 3 && pick.mount(g[0], g[2]) {
			mnt, root, mounted = unescape(f[4]), f[3], true
			break
		}
	}
	if !mounted {
		return "", "", false, false
	}
	for _, line := range strings.Split(string(cgroup), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || !pick.line(parts[0], parts[1]) {
			continue
		}
		rel, ok := strings.CutPrefix(parts[2], root)
		if !ok || strings.Contains(rel, "..") {
			return mnt, "", true, false
		}
		return mnt, rel, true, true
	}
	return mnt, "", true, false
}

func hasOption(opts, want string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
