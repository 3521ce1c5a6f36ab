package exec

import (
	"fmt"
	"slices"
	"strings"
	"syscall"

	"github.com/ipcflow/ipcflow/contain"
	"github.com/ipcflow/ipcflow/isolate"
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
	if p.contain.NeedsLeaf(p.v2Controllers()) {
		return p.contain.String() + "; ipcflow and its guardian move into a leaf of their own, ipcflow.<run>.self, so that " +
			p.contain.Parent + " (delegated to ipcflow) can pass " + strings.Join(p.v2Controllers(), ", ") + " down"
	}
	return p.contain.String()
}

// v2Controllers lists the cgroup v2 controllers the plan's limits need
// the run's group to pass down.
func (p *Plan) v2Controllers() []string {
	var cs []string
	for _, sp := range p.Stages {
		for _, c := range isolate.Controllers(sp.Limits) {
			if !slices.Contains(cs, c) {
				cs = append(cs, c)
			}
		}
	}
	return cs
}

// leave moves ipcflow and its guardian into a leaf of ipcflow's own
// group, ipcflow.<run>.self, recorded in the manifest first, where the
// plan's v2 limits need that group to pass controllers down and it does
// not yet (contain/self.go: only where the group is delegated to ipcflow
// and holds nothing else, which planLimits checked). The manifest's
// removal (last made first: after the run's group) brings them back and
// removes the leaf.
func (f *flow) leave() error {
	cs := f.plan.v2Controllers()
	if !f.plan.contain.NeedsLeaf(cs) {
		return nil
	}
	// The guardian is forked in the background: once it is, it is in
	// ipcflow's group to be moved, and no fork is under way.
	guard := 0
	if f.guard != nil {
		guard = f.guard.Pid()
	}
	name := f.rd.SelfCgroupName()
	if err := f.rd.Record(rundir.KindCgroup, f.plan.contain.Path(name)); err != nil {
		return err
	}
	if _, err := contain.Leave(f.plan.contain, name, guard); err != nil {
		return fmt.Errorf("limit: %s: %w", strings.Join(cs, ", "), err)
	}
	return nil
}

// newCgroup makes the run's cgroup, recorded in the manifest first. When
// the kernel refuses after all, the run goes on with process groups and
// says so.
func (f *flow) newCgroup() error {
	if !f.plan.containOK {
		return nil
	}
	if err := f.leave(); err != nil {
		return err
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
