package exec

import (
	"fmt"
	"syscall"

	"github.com/ipcflow/ipcflow/contain"
	"github.com/ipcflow/ipcflow/rundir"
)

// A run's processes are held in a cgroup of the run's own where the
// machine lets ipcflow make one (package contain): a stage's descendant
// that leaves its process group (`setsid daemon &`) dies with the run, at
// teardown, and after a SIGKILL of ipcflow, when the guardian's reclaim
// removes the group the manifest lists (rundir.KindCgroup). Elsewhere process groups are all
// there is: each stage's group is killed by group, and a descendant that
// made a group or session of its own is out of reach (docs/exec.md).

// containment says in words how the plan's processes will be held, for
// --dry-run.
func (p *Plan) containment() string {
	if !p.containOK {
		return "process groups (no cgroup this user may create here)"
	}
	return p.contain.String()
}

// newCgroup makes the run's cgroup, recorded in the manifest first. When
// the kernel refuses after all, the run goes on with process groups and
// says so.
func (f *flow) newCgroup() error {
	if !f.plan.containOK {
		return nil
	}
	name := f.rd.CgroupName()
	if err := f.rd.Record(rundir.KindCgroup, f.plan.contain.Path(name)); err != nil {
		return err
	}
	g, err := contain.New(f.plan.contain, name)
	if err != nil {
		fmt.Fprintf(f.o.Stderr, "ipcflow: warning: %v; holding stages by process group only\n", err)
		return nil
	}
	f.cgroup = g
	return nil
}

// startIn runs start (a fork) so that the child is born in the run's
// cgroup, if it has one.
func (f *flow) startIn(attr *syscall.SysProcAttr, start func() (int, error)) (int, error) {
	if f.cgroup == nil {
		return start()
	}
	return f.cgroup.Spawn(attr, start)
}
