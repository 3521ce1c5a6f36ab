package exec

// Starting stages: the movers, each stage's process (direct exec or the
// stage shell), its semaphores, and skipping a stage that will not run.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/ipcflow/ipcflow/channels"
	"github.com/ipcflow/ipcflow/locks"
	"github.com/ipcflow/ipcflow/movers"
)

// file returns the file for end e (used once per end). Ends of ipcflow's
// own fds come back as os.Stdin, os.Stdout, os.Stderr, which movers use
// without closing. The shared /dev/null only ever ends a stage's port
// (wiring.go); a mover would close it, so the planner never gives a movers.Running
// a null end.
func (f *flow) file(e End) *os.File {
	switch e.Kind {
	case EndOwn:
		return [...]*os.File{os.Stdin, os.Stdout, os.Stderr}[e.Fd]
	case EndNull:
		return f.null
	}
	return f.wires[e.Wire].take(e)
}

// startMovers starts every tee, join and label copier.
func (r *flow) startMovers() {
	for _, mp := range r.plan.Movers {
		var m movers.Running
		// Into a closed stdout, a copy fails; into a closed stderr it
		// discards, as a stage's own stderr writes fail unseen (stdio.go).
		if d := mp.Dsts[0]; len(mp.Dsts) == 1 && d.isOwn(1) && r.closedOwn[1] {
			m = r.closedDst(mp)
			r.movers = append(r.movers, m)
			r.moverPlans = append(r.moverPlans, mp)
			continue
		}
		switch mp.Kind {
		case Tee:
			dsts := make([]*os.File, len(mp.Dsts))
			for i, d := range mp.Dsts {
				dsts[i] = r.file(d)
			}
			if mp.ReadAhead {
				m = movers.StartTeeAhead(r.file(mp.Srcs[0]), dsts, r.rd.Path)
			} else {
				m = movers.StartTee(r.file(mp.Srcs[0]), dsts, r.rd.Path)
			}
		case Join:
			srcs := make([]*os.File, len(mp.Srcs))
			for i, s := range mp.Srcs {
				srcs[i] = r.file(s)
			}
			m = movers.StartJoin(srcs, r.file(mp.Dsts[0]))
		case Label:
			m = movers.StartLabel(r.file(mp.Srcs[0]), os.Stderr, mp.Stage+": ")
		}
		r.movers = append(r.movers, m)
		r.moverPlans = append(r.moverPlans, mp)
	}
}

// takeFiles takes the files of a stage's fd table, and closes them with
// release (after the stage started, or when it never will).
type stageFiles struct {
	fds   []uintptr
	owned []*os.File
}

func (f *flow) takeStageFiles(st *liveStage) *stageFiles {
	sf := &stageFiles{}
	st.outputs = map[int]fileID{}
	for fd, e := range st.proc.Fds {
		switch e.Kind {
		case EndOwn:
			if f.closedOwn[e.Fd] {
				sf.fds = append(sf.fds, closedFd) // as ipcflow got it (stdio.go)
				continue
			}
			sf.fds = append(sf.fds, uintptr(e.Fd))
		case EndNull:
			sf.fds = append(sf.fds, f.null.Fd())
		case EndNative:
			file := f.wires[e.Wire].takeNative(e)
			if file == nil {
				// A native end the channel does not have: a bug, but
				// the stage gets /dev/null rather than ipcflow a panic.
				sf.fds = append(sf.fds, f.null.Fd())
				continue
			}
			sf.owned = append(sf.owned, file)
			sf.fds = append(sf.fds, file.Fd())
		default:
			f := f.wires[e.Wire].take(e)
			sf.owned = append(sf.owned, f)
			sf.fds = append(sf.fds, f.Fd())
			if id, ok := fileIDOf(f); ok && e.Kind == EndWrite && fd != 2 {
				st.outputs[e.Wire] = id
			}
		}
	}
	return sf
}

// release closes ipcflow's copies: from now on only the stage holds them,
// so its exit is what readers see as end of file.
func (sf *stageFiles) release() {
	for _, f := range sf.owned {
		f.Close()
	}
}

// spawn starts one process of a stage: its own process group, killed if
// ipcflow dies. The parent-death signal belongs to the thread that forks
// (golang/go#27505), so the fork runs on a locked thread; the thread goes
// back to the pool afterwards and Go never ends pool threads.
// It is born in the run's cgroup, if the run has one.
func (f *flow) spawn(pr *Process, fds []uintptr, argv []string, path string) (int, error) {
	attr := &syscall.ProcAttr{
		Dir:   pr.Dir,
		Env:   pr.Env,
		Files: fds,
		Sys:   &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return f.startIn(attr.Sys, func() (int, error) {
		// A program being written by a concurrent fork may briefly fail
		// with ETXTBSY (golang/go#22315): retry.
		for delay := time.Millisecond; ; delay *= 2 {
			pid, err := syscall.ForkExec(path, argv, attr)
			if !errors.Is(err, syscall.ETXTBSY) || delay > 100*time.Millisecond {
				return pid, err
			}
			time.Sleep(delay)
		}
	})
}

// process is what st's process gets when it starts now. newFlow built
// every stage's; a stage that runs after others is built again, because
// its words are expanded when it starts, not when the flow did: an
// earlier stage may have made the program, the files a glob matches, or
// the directory it runs in. If that fails now (ipcflow's own directory
// removed meanwhile), the stage runs as newFlow built it, and says so.
func (f *flow) process(st *liveStage) *Process {
	if len(st.plan.Stage.After) == 0 {
		return st.proc
	}
	pr, err := f.plan.Process(st.plan, f.names)
	if err != nil {
		fmt.Fprintf(f.o.Stderr, "ipcflow: warning: stage %s: %v; its words are as they were when the flow started\n", st.name(), err)
		return st.proc
	}
	st.proc = pr
	return pr
}

// startStage starts st now. A missing program or one that cannot run is a
// stage that failed at once: 127 or 126, with a line that names it.
func (f *flow) startStage(st *liveStage) {
	// Set before anything can fail: a copy that could not even start
	// lived no time, and its restart's back-off doubles (restart.go).
	st.started = time.Now()
	pr := f.process(st)
	sf, hold := f.stageFiles(st)
	if !hold {
		defer sf.release()
	}
	cmd := strings.Join(pr.Argv, " ")
	if len(cmd) > 200 {
		cut := 200
		for cut > 0 && !utf8.RuneStart(cmd[cut]) {
			cut-- // not in the middle of a character
		}
		cmd = cmd[:cut] + "..." // a message, not the command
	}
	if pr.NotFound {
		code, msg := cannotRun(pr.Dir, pr.Argv[0], nil)
		fmt.Fprintf(f.o.Stderr, "ipcflow: stage %s: %s: %s\n", st.name(), pr.Argv[0], msg)
		f.finished(st, exitInfo{code: code, reported: true})
		return
	}
	if pr.ScriptFile != "" {
		if err := f.writeScript(pr.ScriptFile, st.plan.Stage.Command); err != nil {
			fmt.Fprintf(f.o.Stderr, "ipcflow: stage %s: %v\n", st.name(), err)
			f.finished(st, exitInfo{code: 126, reported: true})
			return
		}
	}
	if pr.Shell || pr.Replicas != nil || len(st.plan.Limits) > 0 {
		pr = withClosedStdio(pr, sf.fds)
	}
	if hold {
		copied := *pr
		copied.Env = copyEnv(st, pr.Env)
		pr = &copied
	}
	pr = withOOMWatch(st, pr)
	pr, fds, tableSent := f.withCopyTable(st, pr, sf.fds)
	defer tableSent()
	path, argv := pr.Path, pr.Argv
	if len(st.plan.Limits) > 0 {
		var err error
		if pr, path, argv, err = limited(st, pr); err != nil {
			fmt.Fprintf(f.o.Stderr, "ipcflow: stage %s: %v\n", st.name(), err)
			f.finished(st, exitInfo{code: 126, reported: true})
			return
		}
	}
	pid, err := f.spawn(pr, fds, argv, path)
	if errors.Is(err, syscall.ENOEXEC) && !pr.Shell {
		// A script without a #! line: shells run those themselves.
		path, argv, serr := shellCommand(st.name(), len(pr.Fds), st.plan.Stage.Command)
		if serr == nil {
			pid, err = f.spawn(pr, fds, argv, path)
		}
	}
	if err != nil {
		code, msg := cannotRun(pr.Dir, pr.Path, err)
		if why := forkFailure(err); why != "" {
			cmd, msg = pr.Argv[0], why
		}
		if pr.Shell {
			cmd = "stage shell"
		}
		if _, serr := os.Stat(pr.Dir); pr.Dir != "" && serr != nil {
			cmd, msg, code = "dir "+pr.Dir, "no such directory", 126
		}
		fmt.Fprintf(f.o.Stderr, "ipcflow: stage %s: %s: %s\n", st.title(), cmd, msg)
		f.finished(st, exitInfo{code: code, reported: true})
		return
	}
	st.pid = pid
	st.state = stRunning
	f.byPid[pid] = st
	if pr.Remote != nil {
		f.rec.SetElsewhere(st.idx, remoteFigures(pr.Remote))
	}
	f.rec.Started(st.idx, pid, f.stageEnds(st, sf.fds))
	// With a cgroup, the guardian kills that (the manifest names it); only
	// process groups need telling.
	if f.guard != nil && f.cgroup == nil {
		if err := f.guard.Watch(pid); err != nil {
			fmt.Fprintf(f.o.Stderr, "ipcflow: %v\n", err)
		}
	}
}

// acquire takes one unit of each semaphore st uses, in the global order
// (locks.AcquireAll: by name, the same for every stage, so two stages can't
// deadlock on them), then reports to the supervisor. On failure or
// cancellation nothing stays taken.
func (f *flow) acquire(ctx context.Context, st *liveStage, ready chan<- acquired) {
	sems := make([]*locks.Sem, 0, len(st.plan.Stage.Uses))
	for _, u := range st.plan.Stage.Uses {
		sems = append(sems, f.sems[u.Name])
	}
	release, err := locks.AcquireAll(ctx, sems)
	ready <- acquired{st: st, release: release, err: err}
}

type acquired struct {
	st      *liveStage
	release func() error // gives the units back; nil when none are held
	err     error
}

// skip closes a stage's ends without starting it, so that its neighbours
// see end of file or EPIPE.
func (f *flow) skip(st *liveStage, why string) {
	st.state = stSkipped
	f.takeStageFiles(st).release()
	f.rec.Skipped(st.idx, why)
	if why != "" {
		fmt.Fprintf(f.o.Stderr, "ipcflow: stage %s: skipped: %s\n", st.title(), why)
	}
}

// writeScript writes a command too long for an argument to path, in the
// run directory (listed in the manifest first, as every object is), for
// the stage shell or bash to read.
func (f *flow) writeScript(path, command string) error {
	if err := f.rd.Record(channels.KindFile, path); err != nil {
		return err
	}
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write the command: %w", err)
	}
	_, err = file.WriteString(command)
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write the command: %w", err)
	}
	return nil
}
