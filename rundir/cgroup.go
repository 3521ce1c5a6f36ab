package rundir

import (
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/contain"
)

// KindCgroup is a manifest line for the run's cgroup (exec/contain.go):
// removing it kills what is in it, then removes it.
const KindCgroup = "cgroup"

// removeCgroup kills what is in a run's cgroup and removes it, for a
// manifest's line. It acts only on a path that names a run's cgroup
// ("ipcflow.<id>.procs" in a cgroup file system): a manifest is only
// trusted as far as clean checks it, and a line naming another cgroup must
// not kill what is in it.
func removeCgroup(path string) error {
	base := filepath.Base(path)
	var st unix.Statfs_t
	if !strings.HasPrefix(base, "ipcflow.") || !strings.HasSuffix(base, ".procs") ||
		unix.Statfs(filepath.Dir(path), &st) != nil ||
		(st.Type != unix.CGROUP2_SUPER_MAGIC && st.Type != unix.CGROUP_SUPER_MAGIC) {
		return fmt.Errorf("%s is not a run's cgroup; left in place", path)
	}
	return contain.Remove(path)
}
