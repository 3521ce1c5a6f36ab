package rundir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/contain"
)

// KindCgroup is a manifest line for the run's cgroup (exec/contain.go):
// removing it kills what is in it, then removes it.
const KindCgroup = "cgroup"

// cgroupSuffix ends a run's cgroup's name, after the run's Prefix:
// ipcflow.<id>.procs.
const cgroupSuffix = "procs"

// CgroupName is the name of the run's cgroup, made by exec (contain) and
// known to clean by its shape.
func (d *Dir) CgroupName() string { return d.Prefix + cgroupSuffix }

// SelfCgroupName is the name of ipcflow's own leaf, where it moves itself
// and its guardian out of a delegated cgroup v2 group (contain.Leave):
// ipcflow.<id>.self.
func (d *Dir) SelfCgroupName() string { return d.Prefix + contain.SelfSuffix }

// removeCgroup kills what is in a run's cgroup and removes it, for a
// manifest's line. It acts only on a path that names a run's cgroup
// ("ipcflow.<id>.procs" in a cgroup file system): a manifest is only
// trusted as far as clean checks it, and a line naming another cgroup must
// not kill what is in it. ipcflow's own leaf ("ipcflow.<id>.self") is not
// killed but left (contain.Rejoin): whoever is in it (ipcflow, its
// guardian) goes back to the group it came from.
func removeCgroup(path string) error {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		// Gone already: a stage's v2 group goes with the run's group it
		// is in (contain.Remove takes the subtree), and its parent with it.
		return nil
	}
	base := filepath.Base(path)
	var st unix.Statfs_t
	self := strings.HasSuffix(base, "."+contain.SelfSuffix)
	if !strings.HasPrefix(base, "ipcflow.") || !strings.HasSuffix(base, "."+cgroupSuffix) && !self ||
		unix.Statfs(filepath.Dir(path), &st) != nil ||
		(st.Type != unix.CGROUP2_SUPER_MAGIC && st.Type != unix.CGROUP_SUPER_MAGIC) {
		return fmt.Errorf("%s is not a run's cgroup; left in place", path)
	}
	if self {
		return contain.Rejoin(path)
	}
	return contain.Remove(path)
}

// strayCgroups lists this user's run cgroups (ipcflow.<id>.procs where
// contain makes them) that are empty, at least strayCgroupAge old and
// whose run is not alive: what a run killed together with its guardian
// left when its directory went missing too. The group says nothing of its
// run's life: a run alive elsewhere (another XDG_RUNTIME_DIR) leaves it
// empty between its stages, for as long as a restart's back-off lasts. So
// a group is a stray only when no process shows its run alive (alive:
// the bases scanned, then procOwners); the age only covers the moment
// before a run's processes show in /proc. A non-empty group (something
// still runs in it) is never a stray: the manifest of its run, when clean
// finds it, kills what is in it.
func strayCgroups(alive func(id string) bool) []object {
	place, ok := contain.Find()
	if !ok {
		return nil
	}
	entries, _ := os.ReadDir(place.Parent)
	var out []object
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "ipcflow.")
		id, ok2 := strings.CutSuffix(rest, "."+cgroupSuffix)
		if !ok || !ok2 || !isID(id) {
			continue
		}
		path := filepath.Join(place.Parent, e.Name())
		var st unix.Stat_t
		if unix.Lstat(path, &st) != nil || int(st.Uid) != os.Getuid() ||
			time.Since(time.Unix(st.Mtim.Unix())) < strayCgroupAge || alive(id) {
			continue
		}
		if populated, err := contain.Populated(path); err != nil || populated {
			continue // something runs in it, or in a group below it
		}
		out = append(out, object{kind: KindCgroup, name: path})
	}
	return out
}

// strayCgroupAge is how old an empty cgroup of no live run must be
// before clean takes it for a stray (a variable for the tests).
var strayCgroupAge = time.Minute
