package exec

// Start-up checks of the user's limits: a flow that cannot get the
// processes it needs is refused with one line naming the limit, before
// anything starts, rather than dying half-way (a fork that fails, or the Go
// runtime's own "failed to create new OS thread", which is fatal and
// prints a stack trace).

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
	"mvdan.cc/sh/v3/syntax"

	"github.com/ipcflow/ipcflow/channels"
)

// LimitError is a limit of this user's that the flow does not fit: ipcflow
// exits 2 before anything starts, as for a usage error.
type LimitError struct{ Msg string }

func (e *LimitError) Error() string { return e.Msg }

// Tasks (processes and threads) a run needs besides its stages', measured
// on this machine: ipcflow's own threads once its bridges and reaper run
// (7 or 8; the Go runtime adds one for each goroutine blocked in a system
// call) and the guardian (a Go program of its own: 4 threads seen, 5 with
// room for its clean-up after a crash).
const (
	ownThreads     = 8
	guardianTasks  = 5
	stageShellTask = 5 // the stage shell is a Go program too: its runtime's threads
)

// stageTasks is how many tasks a stage takes at most at one time, as far
// as its command shows: the program, or the stage shell and the commands
// of its widest pipeline.
func stageTasks(pr *Process, script *syntax.File) int {
	if r := pr.Replicas; r != nil {
		// The runner is a Go program too; then its copies, and the merge.
		n := stageShellTask + r.Copies*stageTasks(r.Copy, script)
		if r.Merge != nil {
			n++
			if r.Merge.Shell {
				n += stageShellTask
			}
		}
		return n
	}
	if !pr.Shell {
		return 1
	}
	widest := 1
	syntax.Walk(script, func(n syntax.Node) bool {
		if b, ok := n.(*syntax.BinaryCmd); ok && (b.Op == syntax.Pipe || b.Op == syntax.PipeAll) {
			widest = max(widest, pipelineWidth(b))
			return false
		}
		return true
	})
	return stageShellTask + widest
}

func pipelineWidth(b *syntax.BinaryCmd) int {
	w := 0
	for _, s := range []*syntax.Stmt{b.X, b.Y} {
		if sub, ok := s.Cmd.(*syntax.BinaryCmd); ok && (sub.Op == syntax.Pipe || sub.Op == syntax.PipeAll) {
			w += pipelineWidth(sub)
		} else {
			w++
		}
	}
	return w
}

// checkProcessBudget refuses a run whose stages would not fit in the
// user's RLIMIT_NPROC (`ulimit -u`), which counts every process and thread
// of the user's real uid. root and holders of CAP_SYS_RESOURCE or
// CAP_SYS_ADMIN are not held to it.
func checkProcessBudget(stages int, tasks int) error {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NPROC, &rl); err != nil || rl.Cur == unix.RLIM_INFINITY || exemptFromNproc() {
		return nil
	}
	self := selfThreads()
	need := tasks + guardianTasks + max(ownThreads-self, 0)
	limit := int64(rl.Cur)
	// The system's count of tasks bounds the user's: when even that
	// leaves room, /proc need not be read through.
	if total, ok := systemTasks(); ok && total+int64(need) < limit {
		return nil
	}
	used := userTasks(os.Getuid())
	if used+int64(need) < limit {
		return nil
	}
	return &LimitError{Msg: fmt.Sprintf("this flow needs about %d more processes and threads (%d stages, ipcflow's own threads, its guardian), "+
		"but ulimit -u (max user processes) is %d and this user has %d running; raise it (ulimit -u %d) or stop some processes",
		need, stages, limit, used, used+int64(need)+1)}
}

// exemptFromNproc reports whether the kernel lets this process exceed
// RLIMIT_NPROC: uid 0, or CAP_SYS_RESOURCE or CAP_SYS_ADMIN in effect.
func exemptFromNproc() bool {
	if os.Getuid() == 0 {
		return true
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	return has(unix.CAP_SYS_RESOURCE) || has(unix.CAP_SYS_ADMIN)
}

// selfThreads is how many threads ipcflow has now.
func selfThreads() int {
	b, _ := os.ReadFile("/proc/self/status")
	return statusField(b, "Threads:")
}

// systemTasks is the number of tasks on the whole system (the fourth field
// of /proc/loadavg: "running/total").
func systemTasks() (int64, bool) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, false
	}
	f := bytes.Fields(b)
	if len(f) < 4 {
		return 0, false
	}
	_, total, ok := bytes.Cut(f[3], []byte("/"))
	n, err := strconv.ParseInt(string(total), 10, 64)
	return n, ok && err == nil
}

// userTasks counts the tasks whose real uid is uid, as RLIMIT_NPROC does
// (zombies included: they count until reaped).
func userTasks(uid int) int64 {
	ents, _ := os.ReadDir("/proc")
	var n int64
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil || statusField(b, "Uid:") != uid {
			continue
		}
		n += int64(max(statusField(b, "Threads:"), 1))
	}
	return n
}

// statusField is the first number after key in a /proc status file.
func statusField(b []byte, key string) int {
	i := bytes.Index(b, []byte("\n"+key))
	if i < 0 {
		return -1
	}
	f := bytes.Fields(b[i+1+len(key):])
	if len(f) == 0 {
		return -1
	}
	n, err := strconv.Atoi(string(f[0]))
	if err != nil {
		return -1
	}
	return n
}

// forkFailure says why a stage could not be started when fork itself
// failed for want of processes, or "" for any other error.
func forkFailure(err error) string {
	if !errors.Is(err, unix.EAGAIN) {
		return ""
	}
	var rl unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NPROC, &rl)
	limit := "unlimited"
	if rl.Cur != unix.RLIM_INFINITY {
		limit = strconv.FormatUint(rl.Cur, 10)
	}
	return fmt.Sprintf("cannot start: no process left for this user (ulimit -u is %s, or the system's limit); raise it with ulimit -u", limit)
}

// fixedFiles are the fds a run holds whatever its edges: the run
// directory's lock and manifest, the guardian's pipe (both ends while it
// starts), /dev/null for unconnected ports, and the pipe a fork reports
// exec errors through. (Removing the run directory takes one more, but
// only once the edges' fds are closed.)
const fixedFiles = 6

// wireFiles is how many fds ipcflow holds for one wire while its stages
// start: both ends of a pipe, FIFO or socket pair; for a bridged edge also
// its object and the pipes between the bridges and the stages.
func wireFiles(w *Wire) int {
	t, ok := channels.Lookup(w.Spec.Type)
	if !ok || !t.Caps.Bridged || w.Internal() {
		return 2
	}
	return 2 + 2*max(w.Spec.Readers, 1) + 2
}

// checkFileBudget refuses a run whose objects would not fit in the fds
// RLIMIT_NOFILE (`ulimit -n`) leaves ipcflow. The Go runtime raised the
// soft limit to the hard one at start, so the hard one is what counts.
func checkFileBudget(p *Plan) error {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == unix.RLIM_INFINITY {
		return nil
	}
	need := fixedFiles
	if len(p.Graph.Sems) > 0 {
		need += 2 // the lease server's socket and the connection it serves
	}
	for _, w := range p.Wires {
		need += wireFiles(w)
	}
	open := openFilesBelow(rl.Cur)
	if int64(open+need) <= int64(rl.Cur) {
		return nil
	}
	return &LimitError{Msg: fmt.Sprintf("this flow needs about %d open files (%d edges and pipes) besides the %d ipcflow has open, "+
		"but ulimit -n (open files) is %d; raise it (ulimit -n %d)", need, len(p.Wires), open, rl.Cur, open+need)}
}

// openFilesBelow counts ipcflow's open fds numbered below limit: a new fd
// takes the lowest free number, and must be below the limit; one above it
// (inherited) takes no room.
func openFilesBelow(limit uint64) int {
	f, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0
	}
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	n := -1 // not the one listing them
	for _, name := range names {
		if fd, err := strconv.ParseUint(name, 10, 64); err == nil && fd < limit {
			n++
		}
	}
	return n
}
