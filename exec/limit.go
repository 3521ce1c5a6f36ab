package exec

// Limits (SPEC 14, package isolate): a stage with a `limit` clause gets
// cgroups of its own, made with the run's objects (in the manifest
// first, removed at teardown or by the guardian), and starts through the
// internal role "limits", which joins them and sets its rlimits before it
// execs the command. A copy the memory group's OOM killer killed is
// reported as "killed: memory limit SIZE". A stage's cgroup v2 group is
// inside the run's (contain.go), which then holds its other stages in a
// leaf (contain's Group.Delegate); where ipcflow's own group must first
// be left for that (delegated to ipcflow, not the root), newCgroup moved
// ipcflow and its guardian into ipcflow.<run>.self (contain.go's leave).

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/ipcflow/ipcflow/contain"
	"github.com/ipcflow/ipcflow/isolate"
	"github.com/ipcflow/ipcflow/parser"
	"github.com/ipcflow/ipcflow/rundir"
)

// planLimits decides each limited stage's mechanisms, or refuses a limit
// this machine cannot enforce (cpu without a cgroup) with one line.
func (p *Plan) planLimits() error {
	for _, sp := range p.Stages {
		st := sp.Stage
		if !st.Limits.Any() {
			continue
		}
		var run *contain.Place
		if p.containOK {
			run = &p.contain
		}
		ms, err := isolate.Plan(st.Limits, run)
		if err != nil {
			return &UsageError{Positioned: true, Msg: fmt.Sprintf("%s:%s: stage %s: %v", p.Graph.File, st.Limits.Pos, st.Name, err)}
		}
		sp.Limits = ms
	}
	return nil
}

// printLimits is --dry-run's line per limit: what enforces it.
func printLimits(w io.Writer, sp *StagePlan) {
	for _, m := range sp.Limits {
		fmt.Fprintf(w, "      limit %s=%s by %s\n", m.Resource, m.Value, m.How)
	}
}

// newLimits makes the cgroups of every limited stage: first, if any is
// on cgroup v2, the run's group passes the controllers down.
func (f *flow) newLimits() error {
	cs := f.plan.v2Controllers()
	run := ""
	if len(cs) > 0 {
		if f.cgroup == nil || f.cgroup.Version != contain.V2 {
			return fmt.Errorf("limit: the run has no cgroup v2 group to hold its stages' %s limits", strings.Join(cs, ", "))
		}
		if err := f.cgroup.Delegate(cs); err != nil {
			return fmt.Errorf("limit: %w", err)
		}
		run = f.cgroup.Path
	}
	for _, st := range f.stages {
		if len(st.plan.Limits) == 0 {
			continue
		}
		name := f.rd.Prefix + "limit-" + st.name() + ".procs"
		for _, path := range isolate.Paths(st.plan.Limits, name, run) {
			if err := f.rd.Record(rundir.KindCgroup, path); err != nil {
				return err
			}
		}
		g, err := isolate.New(st.plan.Limits, st.plan.Stage.Limits, name, run)
		st.limits = g
		if err != nil {
			return fmt.Errorf("stage %s: %w", st.name(), err)
		}
	}
	return nil
}

// removeLimits removes the stages' cgroups, killing what is left in them.
func (f *flow) removeLimits() error {
	var first error
	for _, st := range f.stages {
		if st.limits == nil {
			continue
		}
		for _, p := range st.limits.Paths {
			if err := contain.Remove(p); err != nil && first == nil {
				first = err
			}
		}
		st.limits = nil
	}
	return first
}

// limited returns the path and argv that start pr's command under st's
// limits: the internal role "limits", then the command. When pr is one of
// ipcflow's own helpers (the stage shell, the replica runner), the pids
// limit is left to it for each program it starts (isolate.HelperArgs,
// TakePrograms): the pids limit counts the stage's programs, not the
// helper's threads, without which Go's runtime dies. pr is then a copy
// whose environment hands the helper that limit.
func limited(st *liveStage, pr *Process) (*Process, string, []string, error) {
	args := isolate.Args(st.limits, st.plan.Limits, st.plan.Stage.Limits)
	if pr.Shell || pr.Replicas != nil {
		if m := pidsMechanism(st.plan.Limits); m != nil && m.V2 {
			// v2 has no per-thread move to fork a program into the pids
			// group with (isolate.Programs is v1's): the helper's own
			// threads would count, and Go's runtime dies without them.
			return pr, "", nil, fmt.Errorf("limit pids=%s: under cgroup v2 a stage run by ipcflow's stage shell or replica runner cannot have one yet (their threads would count against it): give the stage one plain command, or drop the pids limit", m.Value)
		}
		var programs string
		args, programs = isolate.HelperArgs(st.limits, st.plan.Limits, st.plan.Stage.Limits)
		if programs != "" {
			c := *pr
			c.Env = append(slices.Clip(pr.Env), isolate.ProgramsEnv+"="+programs)
			pr = &c
		}
	}
	path, argv, err := internalCommand("limits", append(append(args, pr.Path), pr.Argv...)...)
	return pr, path, argv, err
}

// pidsMechanism is how the pids limit among ms is enforced, nil if none.
func pidsMechanism(ms []isolate.Mechanism) *isolate.Mechanism {
	for i := range ms {
		if ms[i].Resource == "pids" {
			return &ms[i]
		}
	}
	return nil
}

// limitedArgv is path and argv started through the internal role
// "limits" with args (isolate.Programs.RoleArgs), or as they are without.
func limitedArgv(args []string, path string, argv []string) (string, []string) {
	if len(args) == 0 {
		return path, argv
	}
	self, wrapped, err := internalCommand("limits", append(append(slices.Clip(args), path), argv...)...)
	if err != nil {
		return path, argv
	}
	return self, wrapped
}

// limitKill is how a copy of st ended when its memory group's OOM killer
// killed it: "memory limit 64MiB"; "" otherwise.
func limitKill(st *liveStage) string {
	if st.limits.Killed() {
		return "memory limit " + parser.FormatSize(st.plan.Stage.Limits.Memory)
	}
	return ""
}
