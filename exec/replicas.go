package exec

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"

	"github.com/ipcflow/ipcflow/parser"
)

// Replicas (SPEC 11, docs/replicas.md): `stage g[N] = CMD` runs N copies
// of CMD over blocks of whole lines of g's input. The stage keeps its one
// fd table (its edges are planned as for any stage, whatever their
// types); its process is the replica runner (replicarun.go), a copy of
// ipcflow in role "replicas", which cuts the input into blocks, starts
// the copies in the stage's process group and cgroup, joins their
// outputs into the stage's out, and ends as the first failing copy did.
// A flow without replicas plans and starts exactly as before: nothing
// here runs for it but the loop in planReplicas.

// replicaBlockEnv sets the block size (bytes, or with K/M suffixes) for
// every replicated stage of a run; the default is defaultReplicaBlock.
const replicaBlockEnv = "IPCFLOW_REPLICA_BLOCK"

// defaultReplicaBlock is the largest block. An ordered copy is a process
// per block, so a block must be large enough for a process start (1 ms
// on bare metal, 6 ms on the project's VM) to be small beside the work
// on it; ordered blocks double from 1 MiB up to it (replicarun.go), and
// up to two blocks per copy, with their outputs, are held in memory
// files. Larger blocks make the last one, which one copy may run while
// the others idle, cost a CPU-bound command more than they save.
const defaultReplicaBlock = 16 << 20

// ReplicaProcess is what a replicated stage's runner is told: its copies'
// command, how the outputs combine, the merge command.
type ReplicaProcess struct {
	Copies int
	Mode   string // "ordered", "unordered" or "merge"
	Block  int
	Copy   *Process // one copy's process, as an unreplicated stage's
	Merge  *Process // merge WORD: its command, the copies' outputs at fds 3...
	// WorkQueue: the copies take their input from the stage's mq edge,
	// a message each (StagePlan.WorkQueue).
	WorkQueue bool
	// Restart: the stage's restart policy, applied per copy by the
	// runner; nil without one.
	Restart *parser.Restart
}

// planReplicas settles each stage's number of copies: N, the value of
// $PARAM, or the CPUs ipcflow may use for auto.
func (p *Plan) planReplicas() error {
	for _, sp := range p.Stages {
		st := sp.Stage
		sp.Copies = 1
		if !st.Replicated() {
			continue
		}
		n, err := p.replicaCount(st)
		if err != nil {
			return err
		}
		sp.Copies = n
		if len(st.Ports) > 0 && (n > 1 || st.Merge != nil) {
			return &UsageError{Positioned: true, Msg: fmt.Sprintf("%s:%s: stage %s: a replicated stage cannot have declared ports (its copies would share one stream); use in, out and err",
				p.Graph.File, st.Ports[0].Pos, st.Name)}
		}
	}
	return nil
}

// replicaCount is the number of copies of replicated stage st.
func (p *Plan) replicaCount(st *parser.Stage) (int, error) {
	switch {
	case st.ReplicasAuto:
		return usableCPUs(), nil
	case st.ReplicasParam != "":
		for _, v := range p.Params {
			if v.Name != st.ReplicasParam {
				continue
			}
			if v.Value == "auto" {
				return usableCPUs(), nil
			}
			n, err := strconv.Atoi(strings.TrimSpace(v.Value))
			if err != nil || n < 1 || n > 1024 {
				return 0, &UsageError{Positioned: true, Msg: fmt.Sprintf("%s:%s: stage %s: replica count $%s is %q: want a number from 1 to 1024, or auto",
					p.Graph.File, st.Pos, st.Name, st.ReplicasParam, v.Value)}
			}
			return n, nil
		}
		return 0, usagef("stage %s: unknown param %s in the replica count", st.Name, st.ReplicasParam)
	}
	return max(st.Replicas, 1), nil
}

// usableCPUs is how many CPUs ipcflow may use: those of its affinity
// mask (sched_getaffinity), fewer where a cgroup's CPU quota allows less
// (v2 cpu.max, v1 cpu.cfs_quota_us / cpu.cfs_period_us, of ipcflow's
// cgroup and every one above it), rounded up, at least 1.
func usableCPUs() int {
	n := 1
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) == nil && set.Count() > 0 {
		n = set.Count()
	}
	if q := cgroupCPUQuota(); q > 0 && q < float64(n) {
		n = max(1, int(math.Ceil(q)))
	}
	return n
}

// cgroupCPUQuota is the smallest CPU quota (in CPUs) of ipcflow's cgroups
// and their parents, 0 when none is set.
func cgroupCPUQuota() float64 {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0
	}
	best := 0.0
	take := func(q float64) {
		if q > 0 && (best == 0 || q < best) {
			best = q
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		ctrls, path := parts[1], parts[2]
		switch {
		case ctrls == "":
			for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
				for d := path; ; d = filepath.Dir(d) {
					take(cpuMax(filepath.Join(root, d, "cpu.max")))
					if d == "/" || d == "." {
						break
					}
				}
			}
		case strings.Contains(","+ctrls+",", ",cpu,"):
			root := "/sys/fs/cgroup/" + ctrls
			if _, err := os.Stat(root); err != nil {
				root = "/sys/fs/cgroup/cpu"
			}
			for d := path; ; d = filepath.Dir(d) {
				quota := readInt(filepath.Join(root, d, "cpu.cfs_quota_us"))
				period := readInt(filepath.Join(root, d, "cpu.cfs_period_us"))
				if quota > 0 && period > 0 {
					take(float64(quota) / float64(period))
				}
				if d == "/" || d == "." {
					break
				}
			}
		}
	}
	return best
}

// cpuMax reads a cgroup v2 cpu.max ("max 100000" or "QUOTA PERIOD").
func cpuMax(path string) float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 || f[0] == "max" {
		return 0
	}
	q, err1 := strconv.ParseFloat(f[0], 64)
	per, err2 := strconv.ParseFloat(f[1], 64)
	if err1 != nil || err2 != nil || per <= 0 {
		return 0
	}
	return q / per
}

func readInt(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// Process builds what stage sp's process sees in the flow named names:
// stageProcess's, or for a replicated stage the replica runner's, with
// its copies' process inside.
func (p *Plan) Process(sp *StagePlan, names FlowNames) (*Process, error) {
	pr, err := p.stageProcess(sp, names)
	st := sp.Stage
	if err != nil || pr.NotFound || !sp.replicaRunner() {
		return pr, err
	}
	r := &ReplicaProcess{Copies: sp.Copies, Mode: "ordered", Block: p.replicaBlock(), Copy: pr}
	switch {
	case st.Merge != nil:
		r.Mode = "merge"
		if r.Merge, err = p.mergeProcess(sp, pr); err != nil {
			return nil, err
		}
	case st.Unordered:
		r.Mode = "unordered"
	}
	r.WorkQueue, r.Restart = sp.WorkQueue, st.Restart
	cfg := runnerConfig{Stage: st.Name, Mode: r.Mode, Copies: r.Copies, Block: r.Block, WorkQueue: r.WorkQueue,
		Copy: runnerCmd{Path: pr.Path, Argv: pr.Argv}, Restart: st.Restart}
	if r.Merge != nil {
		cfg.Merge = &runnerCmd{Path: r.Merge.Path, Argv: r.Merge.Argv, NotFound: r.Merge.NotFound}
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	path, argv, err := internalCommand("replicas", string(js))
	if err != nil {
		return nil, err
	}
	return &Process{Name: pr.Name, Fds: pr.Fds, Env: pr.Env, Dir: pr.Dir, Path: path, Argv: argv,
		ScriptFile: pr.ScriptFile, Replicas: r}, nil
}

// replicaRunner reports whether stage sp runs as a replica runner:
// several copies, a merge, or copies fed from a work queue.
func (sp *StagePlan) replicaRunner() bool {
	return sp.Copies > 1 || sp.Stage.Merge != nil || sp.WorkQueue
}

// replicaBlock is the block size: IPCFLOW_REPLICA_BLOCK, or the default.
func (p *Plan) replicaBlock() int {
	for _, kv := range p.Environ {
		if v, ok := strings.CutPrefix(kv, replicaBlockEnv+"="); ok {
			if n, err := parser.ParseSize(v); err == nil && n > 0 && n <= 1<<30 {
				return int(n)
			}
		}
	}
	return defaultReplicaBlock
}

// mergeProcess is the merge command of stage sp: WORD expanded in the
// stage's environment, with the copies' outputs appended as file
// arguments /dev/fd/3, /dev/fd/4, ... in copy order (as bash's <( )
// gives them). One simple command is exec'd directly; anything else runs
// in the stage shell, which hands fds 3 and up on to its programs.
func (p *Plan) mergeProcess(sp *StagePlan, copyPr *Process) (*Process, error) {
	st := sp.Stage
	text, err := assignValue(copyPr.Env, st.Merge)
	if err != nil {
		return nil, &UsageError{Positioned: true, Msg: fmt.Sprintf("%s:%s: stage %s: merge: %v", p.Graph.File, st.MergePos, st.Name, err)}
	}
	var b strings.Builder
	b.WriteString(text)
	for i := range sp.Copies {
		fmt.Fprintf(&b, " /dev/fd/%d", 3+i)
	}
	command := b.String()
	f, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(command), "")
	if err != nil || len(f.Stmts) == 0 {
		msg := "an empty command"
		if err != nil {
			msg = err.Error()
		}
		return nil, &UsageError{Positioned: true, Msg: fmt.Sprintf("%s:%s: stage %s: merge command %q: %s", p.Graph.File, st.MergePos, st.Name, text, msg)}
	}
	mp := &Process{Name: st.Name + " merge", Env: copyPr.Env, Dir: copyPr.Dir}
	cwd := copyPr.Dir
	if cwd == "" || !filepath.IsAbs(cwd) {
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		cwd = filepath.Join(wd, cwd)
	}
	if args := directArgs(f, copyPr.Env, cwd); args != nil {
		if path, err := interp.LookPathDir(cwd, expand.ListEnviron(copyPr.Env...), args[0]); err == nil {
			mp.Path, mp.Argv = path, args
			return mp, nil
		} else if !interp.IsBuiltin(args[0]) {
			mp.Argv, mp.NotFound = args, true
			return mp, nil
		}
	}
	path, argv, err := shellCommand(st.Name, 3+sp.Copies, command)
	if err != nil {
		return nil, err
	}
	mp.Shell, mp.Path, mp.Argv = true, path, argv
	return mp, nil
}

// runnerConfig is the replica runner's one argument, as JSON.
type runnerConfig struct {
	Stage  string     `json:"stage"`
	Mode   string     `json:"mode"`
	Copies int        `json:"copies"`
	Block  int        `json:"block"`
	Copy   runnerCmd  `json:"copy"`
	Merge  *runnerCmd `json:"merge,omitempty"`
	// WorkQueue: in is the mq port IPCFLOW_PORT_IN, not fd 0.
	WorkQueue bool `json:"work_queue,omitempty"`
	// Restart: the stage's restart policy, which the runner applies to
	// each copy (replicarestart.go).
	Restart *parser.Restart `json:"restart,omitempty"`
}

type runnerCmd struct {
	Path     string   `json:"path"`
	Argv     []string `json:"argv"`
	NotFound bool     `json:"not_found,omitempty"`
}

// describeReplicas is --dry-run's account of a replicated stage.
func describeReplicas(name string, pr *Process, command string) []string {
	r := pr.Replicas
	how := map[string]string{
		"ordered":   "a copy per block (1 MiB, doubling), outputs joined in the order of the blocks",
		"unordered": "long-lived copies, a block to whichever is free, outputs merged a line at a time",
		"merge":     "long-lived copies, a block to whichever is free, outputs to the merge command",
	}[r.Mode]
	block := r.Block
	if r.Mode != "ordered" {
		block = min(block, replicaFirstBlock)
	}
	lines := []string{fmt.Sprintf("  %s: %d copies, %s (blocks of %s): replica runner %s", name, r.Copies, r.Mode, sizeText(block), how)}
	if r.WorkQueue {
		lines[0] = fmt.Sprintf("  %s: %d copies, unordered: replica runner receives from the mq edge into in, each message (whole lines) for one copy, outputs merged a line at a time", name, r.Copies)
	}
	c := r.Copy
	what := ""
	switch {
	case c.Bash != nil:
		what = "bash: " + oneLine(command)
	case c.Shell:
		what = "stage shell: " + oneLine(command)
	default:
		what = "exec " + c.Path + ": " + quoteArgs(c.Argv)
	}
	lines = append(lines, fmt.Sprintf("      copies %s[0] to %s[%d]: %s", name, name, r.Copies-1, what))
	if rs := r.Restart; rs != nil {
		again := "a block whose process failed runs again over the same block, its output dropped"
		if r.Mode != "ordered" {
			again = "a copy that failed starts again on the same input and output pipes, the runner holding them meanwhile"
		}
		switch {
		case rs.Always && r.Mode == "ordered":
			again += " (always acts as on-failure: a process that exited 0 or 1 has done its block)"
		case rs.Always:
			again += ", and one that exited 0 or 1 before its input ended"
		}
		lines = append(lines, fmt.Sprintf("      restart %s per copy, by the runner (max %d within %v, back-off %v doubling to %v): %s",
			rs.When(), rs.Max, rs.Within, rs.Backoff, max(parser.MaxBackoff, rs.Backoff), again))
	}
	if m := r.Merge; m != nil {
		switch {
		case m.NotFound:
			what = "exec " + quoteArgs(m.Argv) + " (not found: the stage will fail with 127)"
		case m.Shell:
			what = "stage shell: " + m.Argv[len(m.Argv)-1]
		default:
			what = "exec " + m.Path + ": " + quoteArgs(m.Argv)
		}
		lines = append(lines, "      merge: "+what+" (copy i's output at /dev/fd/3+i)")
	}
	return lines
}

func sizeText(n int) string {
	switch {
	case n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}
