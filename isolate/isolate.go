// Package isolate enforces a stage's `limit` clause (SPEC 14): memory,
// cpu, pids and files. Where the machine offers cgroup v1 controllers
// that this user may write (root, on these machines), the stage gets a
// group of its own in each of the memory, cpu and pids hierarchies, under
// ipcflow's own group there; elsewhere memory and pids fall back to
// setrlimit (RLIMIT_AS, RLIMIT_NPROC) and cpu is refused. files is always
// RLIMIT_NOFILE: no cgroup counts open files. The cgroup v2 hierarchy of
// these machines has no controllers, so it is not used for limits (not
// built: see docs/supervision.md).
//
// The stage joins its groups and sets its limits itself, before it execs
// its command: exec starts it through the internal role "limits" (Enter),
// so nothing runs unlimited for a moment, and ipcflow itself never
// steps into a limited group.
package isolate

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/contain"
	"github.com/ipcflow/ipcflow/parser"
)

// Mechanism says how one resource is limited.
type Mechanism struct {
	Resource string // memory, cpu, pids, files
	Value    string // as the report says it: 64MiB, 0.5, 10
	Cgroup   string // the v1 hierarchy's mount ("" for setrlimit)
	Rlimit   int    // the resource for setrlimit, when Cgroup is ""
	How      string // in words, for --dry-run
}

// Plan says how each limit of l is enforced here, or which one cannot be.
func Plan(l *parser.Limits) ([]Mechanism, error) {
	var ms []Mechanism
	add := func(res, val string, rl int, rlName string) error {
		if mnt, ok := contain.V1Own(res); ok {
			ms = append(ms, Mechanism{Resource: res, Value: val, Cgroup: mnt, How: "cgroup v1 " + res + " controller"})
			return nil
		}
		if rlName == "" {
			return fmt.Errorf("limit %s=%s needs a cgroup with the %s controller, and none here may be written by this user (setrlimit has no equivalent)", res, val, res)
		}
		ms = append(ms, Mechanism{Resource: res, Value: val, Rlimit: rl, How: "setrlimit " + rlName + " (no cgroup this user may write)"})
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

// Group is a stage's cgroups, one per limited hierarchy.
type Group struct {
	Paths  []string // the group's directory in each hierarchy
	memory string   // the memory group, for its OOM count
	ooms   int      // the OOM kills counted at the last Killed
}

// Paths returns where New makes the groups of name for mechanisms ms:
// for the manifest, before they exist.
func Paths(ms []Mechanism, name string) []string {
	var paths []string
	for _, m := range ms {
		if m.Cgroup != "" {
			paths = append(paths, filepath.Join(m.Cgroup, name))
		}
	}
	return paths
}

// New makes the groups and writes their limits.
func New(ms []Mechanism, l *parser.Limits, name string) (*Group, error) {
	g := &Group{}
	for _, m := range ms {
		if m.Cgroup == "" {
			continue
		}
		dir := filepath.Join(m.Cgroup, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return g, fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		g.Paths = append(g.Paths, dir)
		var err error
		switch m.Resource {
		case "memory":
			g.memory = dir
			limit := []byte(strconv.FormatInt(l.Memory, 10))
			err = write(dir, "memory.limit_in_bytes", limit)
			// With swap, a group at its limit would swap instead of
			// being stopped: the limit counts swap too where it can.
			if _, serr := os.Stat(filepath.Join(dir, "memory.memsw.limit_in_bytes")); err == nil && serr == nil {
				err = write(dir, "memory.memsw.limit_in_bytes", limit)
			}
		case "cpu":
			const period = 100000
			if err = write(dir, "cpu.cfs_period_us", []byte(strconv.Itoa(period))); err == nil {
				err = write(dir, "cpu.cfs_quota_us", []byte(strconv.Itoa(max(1000, int(l.CPU*period)))))
			}
		case "pids":
			err = write(dir, "pids.max", []byte(strconv.Itoa(l.Pids)))
		}
		if err != nil {
			return g, fmt.Errorf("limit %s: %w", m.Resource, err)
		}
	}
	return g, nil
}

func write(dir, file string, data []byte) error {
	return os.WriteFile(filepath.Join(dir, file), data, 0)
}

// Killed reports whether the memory group's OOM killer killed something
// since the last call: read from memory.oom_control's oom_kill count, not
// guessed from a SIGKILL.
func (g *Group) Killed() bool {
	if g == nil || g.memory == "" {
		return false
	}
	data, err := os.ReadFile(filepath.Join(g.memory, "memory.oom_control"))
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "oom_kill" {
			n, _ := strconv.Atoi(f[1])
			killed := n > g.ooms
			g.ooms = n
			return killed
		}
	}
	return false
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
		if m.Cgroup != "" {
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
	err := syscall.Exec(args[1], args[2:], os.Environ())
	fmt.Fprintf(os.Stderr, "ipcflow: limit: %s: %v\n", args[1], err)
	if errors.Is(err, syscall.ENOENT) {
		return 127
	}
	return 126
}
