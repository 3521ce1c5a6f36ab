// Package isolate enforces a stage's `limit` clause (SPEC 14): memory,
// cpu, pids and files. Each of memory, cpu and pids gets, the first that
// the machine offers:
//
//   - cgroup v2: a group of the stage's own inside the run's v2 group
//     (package contain makes that, and passes the controllers down to it:
//     contain/delegate.go; where ipcflow's own group is delegated to it
//     alone, after moving ipcflow into a leaf: contain/self.go), with
//     memory.max (and memory.swap.max 0), cpu.max, pids.max;
//   - cgroup v1, where this user may write the controller's hierarchy
//     (root, on these machines): a group of the stage's own under
//     ipcflow's own group in each of the memory, cpu and pids hierarchies;
//   - setrlimit: RLIMIT_AS for memory, RLIMIT_NPROC for pids; cpu has none
//     and is refused.
//
// files is always RLIMIT_NOFILE: no cgroup counts open files.
//
// The stage joins its groups and sets its limits itself, before it execs
// its command: exec starts it through the internal role "limits" (Enter),
// so nothing runs unlimited for a moment, and ipcflow itself never
// steps into a limited group. Where the stage's process is one of
// ipcflow's own helpers (the stage shell, the replica runner), a v1 pids
// group and RLIMIT_NPROC are left to the helper for each program it
// starts (HelperArgs, Programs): pids counts the stage's programs, not
// the threads of a Go process.
package isolate

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/contain"
	"github.com/ipcflow/ipcflow/parser"
)

// Mechanism says how one resource is limited.
type Mechanism struct {
	Resource string // memory, cpu, pids, files
	Value    string // as the report says it: 64MiB, 0.5, 10
	V2       bool   // in the stage's cgroup v2 group, inside the run's
	Cgroup   string // v1: ipcflow's own group in the controller's hierarchy
	Rlimit   int    // the resource for setrlimit, when neither
	How      string // in words, for --dry-run
}

// Cgroup v2's file for each controller's limit, and v1's.
var (
	v2File = map[string]string{"memory": "memory.max", "cpu": "cpu.max", "pids": "pids.max"}
	v1File = map[string]string{"memory": "memory.limit_in_bytes", "cpu": "cpu.cfs_quota_us", "pids": "pids.max"}
)

// Plan says how each limit of l is enforced here, or which one cannot
// be. run is where the run's cgroup will be made (contain.Find), nil
// where it will have none.
func Plan(l *parser.Limits, run *contain.Place) ([]Mechanism, error) {
	var ms []Mechanism
	add := func(res, val string, rl int, rlName string) error {
		// why is said where v2 would serve but for ipcflow's group not
		// being delegated to it alone (contain/self.go): how to get it.
		why := ""
		if run != nil {
			err := run.Offers(res)
			if err == nil {
				ms = append(ms, Mechanism{Resource: res, Value: val, V2: true, How: "cgroup v2 " + v2File[res]})
				return nil
			}
			var de *contain.DelegationError
			if errors.As(err, &de) {
				why = "cgroup v2: " + de.Error()
			}
		}
		if mnt, ok := contain.V1Own(res); ok {
			how := "cgroup v1 " + v1File[res]
			if why != "" {
				how += " (" + why + ")"
			}
			ms = append(ms, Mechanism{Resource: res, Value: val, Cgroup: mnt, How: how})
			return nil
		}
		if rlName == "" {
			if why != "" {
				return fmt.Errorf("limit %s=%s needs a cgroup with the %s controller, and none here may be written by this user (setrlimit has no equivalent; %s)", res, val, res, why)
			}
			return fmt.Errorf("limit %s=%s needs a cgroup with the %s controller, and none here may be written by this user (setrlimit has no equivalent)", res, val, res)
		}
		if why == "" {
			why = "no cgroup this user may write"
		}
		ms = append(ms, Mechanism{Resource: res, Value: val, Rlimit: rl, How: "setrlimit " + rlName + " (" + why + ")"})
		return nil
	}
	if l.Memory > 0 {
		if err := add("memory", parser.FormatSize(l.Memory), unix.RLIMIT_AS, "RLIMIT_AS"); err != nil {
			return nil, err
		}
	}
	if l.CPU > 0 {
		if err := add("cpu", strconv.FormatFloat(l.CPU, 'f', -1, 64), 0, ""); err != nil {
			return nil, err
		}
	}
	if l.Pids > 0 {
		if err := add("pids", strconv.Itoa(l.Pids), unix.RLIMIT_NPROC, "RLIMIT_NPROC"); err != nil {
			return nil, err
		}
	}
	if l.Files > 0 {
		ms = append(ms, Mechanism{Resource: "files", Value: strconv.Itoa(l.Files), Rlimit: unix.RLIMIT_NOFILE, How: "setrlimit RLIMIT_NOFILE"})
	}
	return ms, nil
}

// Controllers lists the v2 controllers ms needs the run's group to pass
// down (contain's Group.Delegate).
func Controllers(ms []Mechanism) []string {
	var cs []string
	for _, m := range ms {
		if m.V2 {
			cs = append(cs, m.Resource)
		}
	}
	return cs
}

// Group is a stage's cgroups: one in v2, or one per limited v1
// hierarchy, or both.
type Group struct {
	Paths  []string // every group's directory
	V2     string   // the v2 group's directory, "" if none
	pids   string   // the cgroup v1 pids group, "" if none
	memory string   // the memory group, for its OOM count
	events string   // the file that counts its OOM kills
	ooms   int      // the OOM kills counted at the last Killed
}

// mkdir makes a cgroup: the kernel's, but for the tests, which lay out a
// v2 tree in a plain directory (internal/testkit/cgfake).
var mkdir = func(path string) error { return os.Mkdir(path, 0o755) }

// Paths returns where New makes the groups of name for mechanisms ms,
// the v2 one in run (the run's v2 group): for the manifest, before they
// exist.
func Paths(ms []Mechanism, name, run string) []string {
	var paths []string
	v2 := false
	for _, m := range ms {
		switch {
		case m.V2 && !v2:
			v2 = true
			paths = append(paths, filepath.Join(run, name))
		case m.Cgroup != "":
			paths = append(paths, filepath.Join(m.Cgroup, name))
		}
	}
	return paths
}

// New makes the groups and writes their limits: the v2 one in run, the
// run's v2 group, which must pass the controllers down already
// (Controllers, contain's Group.Delegate).
func New(ms []Mechanism, l *parser.Limits, name, run string) (*Group, error) {
	g := &Group{}
	for _, m := range ms {
		if m.V2 {
			if err := g.newV2(m.Resource, l, filepath.Join(run, name)); err != nil {
				return g, err
			}
			continue
		}
		if m.Cgroup == "" {
			continue
		}
		dir := filepath.Join(m.Cgroup, name)
		if err := mkdir(dir); err != nil {
			return g, fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		g.Paths = append(g.Paths, dir)
		var err error
		switch m.Resource {
		case "memory":
			g.memory, g.events = dir, "memory.oom_control"
			limit := []byte(strconv.FormatInt(l.Memory, 10))
			err = write(dir, "memory.limit_in_bytes", limit)
			// With swap, a group at its limit would swap instead of
			// being stopped: the limit counts swap too where it can.
			if _, serr := os.Stat(filepath.Join(dir, "memory.memsw.limit_in_bytes")); err == nil && serr == nil {
				err = write(dir, "memory.memsw.limit_in_bytes", limit)
			}
		case "cpu":
			quota, period := cpuQuota(l)
			if err = write(dir, "cpu.cfs_period_us", []byte(strconv.Itoa(period))); err == nil {
				err = write(dir, "cpu.cfs_quota_us", []byte(strconv.Itoa(quota)))
			}
		case "pids":
			g.pids = dir
			err = write(dir, "pids.max", []byte(strconv.Itoa(l.Pids)))
		}
		if err != nil {
			return g, fmt.Errorf("limit %s: %w", m.Resource, err)
		}
	}
	return g, nil
}

// cpuQuota is cpu=FRACTION as the kernel takes it, in v1's two files or
// v2's cpu.max alike: µs of CPU per period of 100ms, at least 1000 (the
// kernel's floor is 1ms).
func cpuQuota(l *parser.Limits) (quota, period int) {
	period = 100000
	return max(1000, int(l.CPU*float64(period))), period
}

// newV2 makes the stage's v2 group at dir, once, and writes the limit of
// res there: memory.max (and memory.swap.max 0, where the kernel counts
// swap, so that the group cannot swap instead of being stopped), cpu.max
// ("QUOTA PERIOD"), pids.max.
func (g *Group) newV2(res string, l *parser.Limits, dir string) error {
	if g.V2 == "" {
		if err := mkdir(dir); err != nil {
			return fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		g.V2 = dir
		g.Paths = append(g.Paths, dir)
	}
	var err error
	switch res {
	case "memory":
		g.memory, g.events = dir, "memory.events"
		err = write(dir, "memory.max", []byte(strconv.FormatInt(l.Memory, 10)))
		if _, serr := os.Stat(filepath.Join(dir, "memory.swap.max")); err == nil && serr == nil {
			err = write(dir, "memory.swap.max", []byte("0"))
		}
	case "cpu":
		quota, period := cpuQuota(l)
		err = write(dir, "cpu.max", []byte(fmt.Sprintf("%d %d", quota, period)))
	case "pids":
		err = write(dir, "pids.max", []byte(strconv.Itoa(l.Pids)))
	}
	if err != nil {
		return fmt.Errorf("limit %s: %w", res, err)
	}
	return nil
}

// write writes the control file of group dir (contain.WriteControl).
func write(dir, file string, data []byte) error {
	return contain.WriteControl(filepath.Join(dir, file), data)
}

// Killed reports whether the memory group's OOM killer killed something
// since the last call: read from the oom_kill count of memory.events (v2)
// or memory.oom_control (v1), not guessed from a SIGKILL.
func (g *Group) Killed() bool {
	if g.OOMFile() == "" {
		return false
	}
	n := OOMKills(g.OOMFile())
	killed := n > g.ooms
	g.ooms = max(g.ooms, n)
	return killed
}

// OOMFile is the file that counts the memory group's OOM kills, "" when
// the group limits no memory: for a replica runner, which names a copy
// killed for the limit as ipcflow names a stage.
func (g *Group) OOMFile() string {
	if g == nil || g.memory == "" {
		return ""
	}
	return filepath.Join(g.memory, g.events)
}

// OOMKills is the oom_kill count in path (OOMFile), 0 when unreadable.
func OOMKills(path string) int {
	if path == "" {
		return 0
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "oom_kill" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// Args are the internal role's arguments before the command: each
// cgroup's directory as "cg=DIR" and each rlimit as "rl=RES:VALUE".
func Args(g *Group, ms []Mechanism, l *parser.Limits) []string {
	var args []string
	if g != nil {
		for _, p := range g.Paths {
			args = append(args, "cg="+p)
		}
	}
	for _, m := range ms {
		if m.V2 || m.Cgroup != "" {
			continue
		}
		var v int64
		switch m.Resource {
		case "memory":
			v = l.Memory
		case "pids":
			v = int64(l.Pids)
		case "files":
			v = int64(l.Files)
		}
		args = append(args, fmt.Sprintf("rl=%d:%d", m.Rlimit, v))
	}
	return append(args, "--")
}

// ClosedStdioEnv names, in the environment of one of ipcflow's own
// processes that stands before a stage's program (the stage shell, the
// replica runner, the role "limits"), the standard fds that ipcflow got
// closed and handed it closed: "1" or "0,2". Go's runtime opens
// /dev/null on a standard fd that is closed when a Go program starts,
// and the program would then write into /dev/null (540 MB of cat gone,
// status 0) where bash's fails with EBADF. Each such process undoes it.
const ClosedStdioEnv = "IPCFLOW_CLOSED_STDIO"

// closeStdioForExec closes, just before Enter's exec, the fds that
// ClosedStdioEnv names, and takes the variable out of the environment
// unless the program is one of ipcflow's own roles, which needs it again.
func closeStdioForExec(argv []string) {
	for _, fd := range TakeClosedStdio(len(argv) > 1 && argv[1] == "__ipcflow_internal") {
		unix.Close(fd)
	}
}

// TakeClosedStdio returns the standard fds ClosedStdioEnv names, and
// takes the variable out of the environment unless keep.
func TakeClosedStdio(keep bool) []int {
	v, ok := os.LookupEnv(ClosedStdioEnv)
	if !ok {
		return nil
	}
	if !keep {
		os.Unsetenv(ClosedStdioEnv)
	}
	var fds []int
	for _, f := range strings.Split(v, ",") {
		if fd, err := strconv.Atoi(f); err == nil && fd >= 0 && fd <= 2 {
			fds = append(fds, fd)
		}
	}
	return fds
}

// Enter is the internal role "limits": it joins the cgroups, sets the
// rlimits, and execs PATH ARGV... (after "--" and the path). It returns
// only on failure, with the status a shell gives.
func Enter(args []string) int {
	for len(args) > 0 && args[0] != "--" {
		a := args[0]
		args = args[1:]
		switch {
		case strings.HasPrefix(a, "cg="):
			if err := write(strings.TrimPrefix(a, "cg="), "cgroup.procs", []byte("0")); err != nil {
				fmt.Fprintf(os.Stderr, "ipcflow: limit: join cgroup: %v\n", err)
				return 126
			}
		case strings.HasPrefix(a, "rl="):
			res, val, _ := strings.Cut(strings.TrimPrefix(a, "rl="), ":")
			r, _ := strconv.Atoi(res)
			v, _ := strconv.ParseUint(val, 10, 64)
			if err := unix.Setrlimit(r, &unix.Rlimit{Cur: v, Max: v}); err != nil {
				fmt.Fprintf(os.Stderr, "ipcflow: limit: setrlimit: %v\n", err)
				return 126
			}
		}
	}
	if len(args) < 3 {
		fmt.Fprintln(os.Stderr, "ipcflow: limit: no command")
		return 126
	}
	closeStdioForExec(args[2:])
	err := syscall.Exec(args[1], args[2:], os.Environ())
	if errors.Is(err, syscall.ENOEXEC) {
		// A script without a #! line: run by sh, as shells run one (and
		// as the stage runs without a limit, exec/start.go).
		err = syscall.Exec("/bin/sh", append([]string{"sh", args[1]}, args[3:]...), os.Environ())
	}
	fmt.Fprintf(os.Stderr, "ipcflow: limit: %s: %v\n", args[1], err)
	if errors.Is(err, syscall.ENOENT) {
		return 127
	}
	return 126
}

// ProgramsEnv is the environment variable that hands a helper stage's
// pids limit to ipcflow's own helper process (the stage shell, the
// replica runner), which applies it to each program it starts
// (TakePrograms). The pids limit counts the stage's programs, not the
// helper: a Go process has threads the kernel counts as tasks, and Go's
// runtime dies (a stack trace) when it may not make one.
const ProgramsEnv = "IPCFLOW_PROGRAM_LIMITS"

// HelperArgs is Args for a stage whose process is one of ipcflow's own
// helpers: its cgroup v1 pids group and its setrlimit limits are left out
// of the args, and returned as programs, the value of ProgramsEnv for the
// helper ("" if none). A cgroup v2 pids limit is in the stage's one
// group, which the helper joins: it stays in args. The rlimits are the
// programs' alone, as the pids limit: RLIMIT_AS (memory's fallback)
// below Go's address space reservations, hundreds of MiB, killed the
// helper at its start with a Go crash dump, and RLIMIT_NOFILE counted
// the helper's own fds (a bash would need fewer).
func HelperArgs(g *Group, ms []Mechanism, l *parser.Limits) (args []string, programs string) {
	var fields []string
	for _, a := range Args(g, ms, l) {
		switch {
		case g != nil && g.pids != "" && a == "cg="+g.pids:
			fields = append(fields, "pids="+g.pids, "max="+strconv.Itoa(l.Pids))
		case strings.HasPrefix(a, "rl="):
			fields = append(fields, a)
		default:
			args = append(args, a)
		}
	}
	return args, strings.Join(fields, "\n")
}

// Programs is a helper's pids limit for the programs it starts.
type Programs struct {
	env  string   // ProgramsEnv's value, for a helper the helper starts
	pids string   // the stage's cgroup v1 pids group
	max  int      // its pids.max
	args []string // the internal role "limits"'s arguments: rl=RES:VALUE
	mu   sync.Mutex
}

// TakePrograms reads ProgramsEnv and removes it from the environment, so
// that programs do not see it; nil when it is not set.
func TakePrograms() *Programs {
	v, ok := os.LookupEnv(ProgramsEnv)
	if !ok {
		return nil
	}
	os.Unsetenv(ProgramsEnv)
	p := &Programs{env: v}
	for _, f := range strings.Split(v, "\n") {
		switch {
		case strings.HasPrefix(f, "pids="):
			p.pids = strings.TrimPrefix(f, "pids=")
		case strings.HasPrefix(f, "max="):
			p.max, _ = strconv.Atoi(strings.TrimPrefix(f, "max="))
		case strings.HasPrefix(f, "rl="):
			p.args = append(p.args, f)
		}
	}
	if p.pids == "" && len(p.args) == 0 {
		return nil
	}
	return p
}

// Env is ProgramsEnv's NAME=VALUE, for a helper that this helper starts
// (a replica runner's copy that is a stage shell); "" for none.
func (p *Programs) Env() string {
	if p == nil {
		return ""
	}
	return ProgramsEnv + "=" + p.env
}

// Max is the pids limit, 0 without one.
func (p *Programs) Max() int {
	if p == nil {
		return 0
	}
	return p.max
}

// RoleArgs are the internal role "limits"'s arguments (before "--") that
// each program must start through, nil when none: the RLIMIT_NPROC
// fallback, set in that wrapper only.
func (p *Programs) RoleArgs() []string {
	if p == nil || len(p.args) == 0 {
		return nil
	}
	return append(slices.Clip(p.args), "--")
}

// Start runs start, which forks and execs one program, so that the fork
// is the stage's pids group's: counted there, and refused (EAGAIN) when
// the group is full. In cgroup v1 a thread may be in a group of its own:
// this goroutine's thread, locked to it, moves into the group for the
// fork and back out after, so neither the helper nor its other threads
// count. While it is in, the group's pids.max is one more, for it; an
// flock on the group's directory keeps the helpers of one stage (a
// replica runner's stage shells) from doing that at once. Threads Go's
// runtime makes meanwhile are made by its template thread, outside, since
// this one is locked (runtime.LockOSThread).
func (p *Programs) Start(start func() error) error {
	if p == nil || p.pids == "" {
		return start()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	dir, err := os.Open(p.pids)
	if err != nil {
		return fmt.Errorf("limit pids: %w", err)
	}
	defer dir.Close()
	if err := unix.Flock(int(dir.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("limit pids: %w", err)
	}
	defer unix.Flock(int(dir.Fd()), unix.LOCK_UN)
	runtime.LockOSThread()
	tid := []byte(strconv.Itoa(unix.Gettid()))
	if err := write(p.pids, "pids.max", []byte(strconv.Itoa(p.max+1))); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("limit pids: %w", err)
	}
	if err := write(p.pids, "tasks", tid); err != nil {
		write(p.pids, "pids.max", []byte(strconv.Itoa(p.max)))
		runtime.UnlockOSThread()
		return fmt.Errorf("limit pids: join cgroup: %w", err)
	}
	err = start()
	if werr := write(filepath.Dir(p.pids), "tasks", tid); werr == nil {
		runtime.UnlockOSThread()
	} // else the thread stays locked, and ends with its goroutine
	write(p.pids, "pids.max", []byte(strconv.Itoa(p.max)))
	return err
}
