package exec

// What exec tells package stats about a run: the stages and edges of the
// plan, each stage's ends as the kernel names them, when each stage
// became ready, started and ended (with its rusage and its I/O, read
// before it is reaped), and the control socket `ipcflow ps` asks.

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/channels"
	"github.com/ipcflow/ipcflow/parser"
	"github.com/ipcflow/ipcflow/stats"
)

// ControlSocket is the name, in a run's directory, of the socket on which
// the run answers `ipcflow ps` with its figures.
const ControlSocket = "control"

// newRecorder makes the run's Recorder: stages in plan order, one edge
// per edge of the script, and which edges each wire carries.
func (f *flow) newRecorder() {
	stageIdx := map[string]int{}
	var sspecs []stats.StageSpec
	for i, st := range f.stages {
		st.idx = i
		stageIdx[st.name()] = i
		var uses []string
		for _, u := range st.plan.Stage.Uses {
			uses = append(uses, u.Name)
		}
		sspecs = append(sspecs, stats.StageSpec{Name: st.name(), Uses: uses, Copies: st.plan.Copies, Host: st.proc.Host})
	}
	f.wireEdges = make([][]int, len(f.plan.Wires))
	var especs []stats.EdgeSpec
	for wi, w := range f.plan.Wires {
		for k, e := range w.Edges {
			es := stats.EdgeSpec{ID: w.ID, From: e.From.String(), To: e.To.String(), Type: w.Spec.Type,
				Producer: -1, Consumer: -1, Records: channels.HasRecords(w.Spec)}
			if len(w.Edges) > 1 {
				es.ID = fmt.Sprintf("%s.%d", w.ID, k)
			}
			if w.Spec.Type == "socket" {
				kind := w.Spec.Options.Socket
				if kind == "" {
					kind = "unix"
				}
				es.Type = "socket " + kind
			}
			if e.From.Stage != nil {
				es.Producer = stageIdx[e.From.Stage.Name]
			}
			if e.To.Stage != nil {
				es.Consumer = stageIdx[e.To.Stage.Name]
			}
			if channels.Counted(w.Spec) {
				lw := f.wires[wi]
				es.Counted = func() (int64, int64, int64) {
					s := lw.ch.Stats()
					return s.Bytes, s.Records, s.Lost
				}
			}
			if fl, ok := f.wires[wi].ch.(channels.Filler); ok {
				es.Fill = fl.Fill
			}
			f.wireEdges[wi] = append(f.wireEdges[wi], len(especs))
			especs = append(especs, es)
		}
	}
	// A pipe of ipcflow's own carries the edges of the tee or join it
	// feeds or drains: a stage blocked on it waits on those edges.
	for changed := true; changed; {
		changed = false
		for _, m := range f.plan.Movers {
			if m.Kind == Label {
				continue
			}
			var union []int
			for _, e := range append(append([]End{}, m.Srcs...), m.Dsts...) {
				if e.Kind == EndRead || e.Kind == EndWrite {
					union = append(union, f.wireEdges[e.Wire]...)
				}
			}
			for _, e := range append(append([]End{}, m.Srcs...), m.Dsts...) {
				if (e.Kind == EndRead || e.Kind == EndWrite) && f.plan.Wires[e.Wire].Internal() && len(f.wireEdges[e.Wire]) == 0 && len(union) > 0 {
					f.wireEdges[e.Wire] = dedupInts(union)
					changed = true
				}
			}
		}
	}
	o := stats.Options{Script: f.plan.Graph.File, Run: f.rd.ID}
	if f.o.Measure {
		o.Interval = stats.DefaultInterval
	}
	if f.cgroup != nil {
		o.Procs = []string{f.cgroup.Procs()}
		// A limited stage's group in the run's hierarchy holds it apart
		// from the others (limit.go).
		for _, st := range f.stages {
			if st.limits == nil {
				continue
			}
			for _, p := range st.limits.Paths {
				if f.cgroup.Holds(p) {
					o.Procs = append(o.Procs, filepath.Join(p, "cgroup.procs"))
				}
			}
		}
	}
	f.rec = stats.New(o, sspecs, especs)
}

func dedupInts(xs []int) []int {
	seen := map[int]bool{}
	var out []int
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// stageEnds names stage st's fds for the Recorder: every wire end but its
// stderr's unless that is an edge (what a stage writes on stderr is
// assumed small, so that a writer's bytes can stand for its one edge's),
// and ipcflow's own stdin and stdout, which are no edge but are I/O.
func (f *flow) stageEnds(st *liveStage, files []uintptr) []stats.End {
	var ends []stats.End
	for fd, e := range st.proc.Fds {
		switch e.Kind {
		case EndOwn:
			if fd != 2 {
				ends = append(ends, stats.End{Fd: fd, Write: fd != 0})
			}
		case EndRead, EndWrite:
			edges := f.wireEdges[e.Wire]
			if fd == 2 && len(edges) == 0 {
				continue
			}
			var s unix.Stat_t
			if unix.Fstat(int(files[fd]), &s) != nil {
				continue
			}
			end := stats.End{Fd: fd, Key: stats.FileKey{Dev: s.Dev, Ino: s.Ino}, Write: e.Kind == EndWrite, Edges: edges}
			if s.Mode&unix.S_IFMT == unix.S_IFIFO {
				if c, err := unix.FcntlInt(files[fd], unix.F_GETPIPE_SZ, 0); err == nil {
					end.Capacity = int64(c)
				}
			}
			ends = append(ends, end)
		}
	}
	return ends
}

// waitExited returns the pid of a child that has exited, without reaping
// it (WNOWAIT), or 0: so that its /proc/PID/io can still be read.
func waitExited() int {
	// siginfo_t for SIGCHLD: si_signo, si_errno, si_code, padding, then
	// si_pid (the kernel's layout on every 64-bit Linux).
	var info struct {
		signo, errno, code, _ int32
		pid                   int32
		_                     [108]byte
	}
	for {
		err := unix.Waitid(unix.P_ALL, 0, (*unix.Siginfo)(unsafe.Pointer(&info)), unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0
		}
		return int(info.pid)
	}
}

// serveControl answers `ipcflow ps` on the run directory's control
// socket, in the background: it is not on the way of the first stage.
func (f *flow) serveControl() {
	path := filepath.Join(f.rd.Path, ControlSocket)
	f.control = stats.Serve(path, f.rec)
}

// statusWords is how a stage ended, in SPEC 6's words.
func statusWords(e exitInfo) string {
	switch {
	case e.code == 0 && e.signal == 0:
		return "exit status 0"
	case e.signal == unix.SIGPIPE || e.epipe:
		return "broken pipe (" + e.String() + ")"
	}
	return e.String()
}

// copyTableEnv names, in a replica runner's environment, the fd of its
// copy table (stats.CopyTable): the fd after the stage's own.
const copyTableEnv = "IPCFLOW_COPY_TABLE"

// withCopyTable gives a replicated stage's runner a table for its copies'
// figures, so that --stats, --monitor and ps show each copy (stats
// cannot tell one child of the runner from another by itself). pr and
// fds are returned extended (copies, not the plan's own); done closes
// ipcflow's end of the file once the runner has its own. A table that
// cannot be made costs the copies' rows, not the run.
func (f *flow) withCopyTable(st *liveStage, pr *Process, fds []uintptr) (_ *Process, _ []uintptr, done func()) {
	if pr.Replicas == nil {
		return pr, fds, func() {}
	}
	t, file, err := stats.NewCopyTable(pr.Replicas.Copies)
	if err != nil {
		fmt.Fprintf(f.o.Stderr, "ipcflow: warning: stage %s: %v: no figures per copy\n", st.name(), err)
		return pr, fds, func() {}
	}
	f.rec.SetCopies(st.idx, t)
	withTable := *pr
	withTable.Env = append(slices.Clip(pr.Env), fmt.Sprintf("%s=%d", copyTableEnv, len(fds)))
	return &withTable, append(slices.Clip(fds), file.Fd()), func() { file.Close() }
}

// oomWatchEnv tells a replicated stage's runner where its memory group
// counts OOM kills, and the limit: LIMIT:PATH. It names a copy killed for
// the limit in its restart lines, as ipcflow names a stage.
const oomWatchEnv = "IPCFLOW_OOM_WATCH"

// withOOMWatch is pr with oomWatchEnv set, for a replicated stage with a
// memory limit enforced by a cgroup.
func withOOMWatch(st *liveStage, pr *Process) *Process {
	file := st.limits.OOMFile()
	if pr.Replicas == nil || file == "" {
		return pr
	}
	watched := *pr
	watched.Env = append(slices.Clip(pr.Env), oomWatchEnv+"="+parser.FormatSize(st.plan.Stage.Limits.Memory)+":"+file)
	return &watched
}

// openCopyTable is the runner's side of withCopyTable: the table its
// environment names (the variable is not passed on to the copies), or
// nil.
func openCopyTable(env []string, copies int) ([]string, *stats.CopyTable) {
	env, v, ok := takeVar(env, copyTableEnv)
	fd, err := strconv.Atoi(v)
	if !ok || err != nil || fd <= 2 {
		return env, nil
	}
	unix.CloseOnExec(fd) // the copies do not get it
	defer unix.Close(fd) // the mapping stays
	t, err := stats.OpenCopyTable(fd, copies)
	if err != nil {
		return env, nil
	}
	return env, t
}
