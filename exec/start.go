package exec

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/ipcflow/ipcflow/channels"
	"github.com/ipcflow/ipcflow/locks"
)

// run is one run of a plan: the objects it made and the stages' state.
// Only the supervisor's goroutine (supervise.go) touches it after newRun.
type run struct {
	plan  *Plan
	names RunNames
	o     Options
	rd    *RunDir
	guard *Guardian
	wires []*rtWire
	null  *os.File

	sems  map[string]*locks.Sem
	lease *locks.LeaseServer

	movers     []mover
	moverPlans []*MoverPlan

	stages []*stageRT
	byPid  map[int]*stageRT

	status   int  // the flow's exit status; -1 until something sets it
	stopping bool // teardown has begun
	cancel   context.CancelFunc
	grace    <-chan time.Time // SIGKILL time, once stopping
	batch    int              // reap batches so far
}

// rtWire is a wire's open object: an edge's channel or a pipe of ipcflow's.
type rtWire struct {
	ch   channels.Channel
	r, w *os.File
}

// take hands over the file for end e; the taker closes it.
func (w *rtWire) take(e End) *os.File {
	if w.ch != nil {
		if e.Kind == EndWrite {
			return w.ch.Writer()
		}
		return w.ch.Reader(e.Index)
	}
	var f *os.File
	if e.Kind == EndWrite {
		f, w.w = w.w, nil
	} else {
		f, w.r = w.r, nil
	}
	return f
}

func (w *rtWire) close() {
	if w.ch != nil {
		w.ch.Close()
	}
	if w.r != nil {
		w.r.Close()
	}
	if w.w != nil {
		w.w.Close()
	}
}

// newRun creates the run directory, the guardian, the semaphores and every
// wire's object. On error, whatever was made is removed again.
func newRun(plan *Plan, o Options) (r *run, err error) {
	rd, err := CreateRunDir()
	if err != nil {
		return nil, err
	}
	r = &run{plan: plan, o: o, rd: rd, byPid: map[int]*stageRT{}, sems: map[string]*locks.Sem{}}
	defer func() {
		if err != nil {
			r.teardownObjects()
			r = nil
		}
	}()
	names := RunNames{ID: rd.ID, Dir: rd.Path}
	r.names = names
	for _, sp := range plan.Stages {
		pr, err := plan.Process(sp, names)
		if err != nil {
			return r, err
		}
		r.stages = append(r.stages, &stageRT{sp: sp, pr: pr})
	}
	if r.guard, err = StartGuardian(rd); err != nil {
		return r, err
	}
	for _, s := range plan.Graph.Sems {
		name := semPosixName(names, s.Name)
		if err := rd.Record(channels.KindSem, name); err != nil {
			return r, err
		}
		sem, err := locks.Create(name, uint32(s.Count))
		if err != nil {
			return r, fmt.Errorf("create semaphore %s: %w", s.Name, err)
		}
		r.sems[s.Name] = sem
	}
	if len(r.sems) > 0 {
		if r.lease, err = locks.ServeLeases(filepath.Join(rd.Path, "lock.sock"), r.sems); err != nil {
			return r, err
		}
	}
	r.planPipeSizes()
	env := rd.ChannelEnv()
	for _, w := range plan.Wires {
		rw := &rtWire{}
		r.wires = append(r.wires, rw)
		if w.Internal() {
			if rw.r, rw.w, err = channels.Pipe(w.Spec.Options.Size); err != nil {
				return r, fmt.Errorf("pipe %s for %s: %w", w.ID, w.Purpose, err)
			}
			continue
		}
		if rw.ch, err = channels.Open(env, w.Spec); err != nil {
			return r, err
		}
	}
	if r.null, err = os.OpenFile(os.DevNull, os.O_RDWR, 0); err != nil {
		return r, err
	}
	return r, nil
}

// planPipeSizes keeps a large flow inside the user's pipe budget: past
// /proc/sys/fs/pipe-user-pages-soft new pipes would silently shrink to
// 8 KiB. Pipes and FIFOs (the same kernel buffers) of unset size share
// what is left, and the user is told.
func (r *run) planPipeSizes() {
	var unsized []*Wire
	for _, w := range r.plan.Wires {
		if (w.Spec.Type == "pipe" || w.Spec.Type == "fifo") && w.Spec.Options.Size == 0 {
			unsized = append(unsized, w)
		}
	}
	size, warn := channels.PlanPipeSize(len(unsized), 0)
	if warn == "" {
		return
	}
	fmt.Fprintf(r.o.Stderr, "ipcflow: warning: %s\n", warn)
	for _, w := range unsized {
		w.Spec.Options.Size = size
	}
}

// teardownObjects closes and removes everything the run made.
func (r *run) teardownObjects() {
	for _, m := range r.movers {
		m.Close()
	}
	for _, w := range r.wires {
		w.close()
	}
	if r.null != nil {
		r.null.Close()
	}
	if r.lease != nil {
		r.lease.Close()
	}
	for _, s := range r.sems {
		s.Close()
	}
	if err := r.rd.Remove(); err != nil {
		fmt.Fprintf(r.o.Stderr, "ipcflow: %v\n", err)
	}
	if r.guard != nil {
		r.guard.Release()
	}
}

// file returns the file for end e (used once per end). Ends of ipcflow's
// own fds come back as os.Stdin, os.Stdout, os.Stderr, which movers use
// without closing.
func (r *run) file(e End) *os.File {
	switch e.Kind {
	case EndOwn:
		return [...]*os.File{os.Stdin, os.Stdout, os.Stderr}[e.Fd]
	case EndNull:
		return r.null
	}
	return r.wires[e.Wire].take(e)
}

// startMovers starts every tee, join and label copier.
func (r *run) startMovers() {
	for _, mp := range r.plan.Movers {
		var m mover
		switch mp.Kind {
		case Tee:
			dsts := make([]*os.File, len(mp.Dsts))
			for i, d := range mp.Dsts {
				dsts[i] = r.file(d)
			}
			m = channels.StartTee(r.file(mp.Srcs[0]), dsts, r.rd.Path)
		case Join:
			srcs := make([]*os.File, len(mp.Srcs))
			for i, s := range mp.Srcs {
				srcs[i] = r.file(s)
			}
			m = channels.StartJoin(srcs, r.file(mp.Dsts[0]))
		case Label:
			m = startLabel(r.file(mp.Srcs[0]), os.Stderr, mp.Stage+": ")
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

func (r *run) takeStageFiles(st *stageRT) *stageFiles {
	sf := &stageFiles{}
	for _, e := range st.pr.Fds {
		switch e.Kind {
		case EndOwn:
			sf.fds = append(sf.fds, uintptr(e.Fd))
		case EndNull:
			sf.fds = append(sf.fds, r.null.Fd())
		default:
			f := r.wires[e.Wire].take(e)
			sf.owned = append(sf.owned, f)
			sf.fds = append(sf.fds, f.Fd())
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
func spawn(pr *Process, fds []uintptr, argv []string, path string) (int, error) {
	attr := &syscall.ProcAttr{
		Dir:   pr.Dir,
		Env:   pr.Env,
		Files: fds,
		Sys:   &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var pid int
	var err error
	// A program being written by a concurrent fork may briefly fail with
	// ETXTBSY (golang/go#22315): retry.
	for delay := time.Millisecond; ; delay *= 2 {
		pid, err = syscall.ForkExec(path, argv, attr)
		if !errors.Is(err, syscall.ETXTBSY) || delay > 100*time.Millisecond {
			return pid, err
		}
		time.Sleep(delay)
	}
}

// startStage starts st now. A missing program or one that cannot run is a
// stage that failed at once: 127 or 126, with a line that names it.
func (r *run) startStage(st *stageRT) {
	if len(st.sp.Stage.After) > 0 {
		// Its words are expanded now, not when the flow started: an
		// earlier stage may have made the program, the files a glob
		// matches, or the directory it runs in.
		if pr, err := r.plan.Process(st.sp, r.names); err == nil {
			st.pr = pr
		}
	}
	sf := r.takeStageFiles(st)
	defer sf.release()
	pr := st.pr
	cmd := strings.Join(pr.Argv, " ")
	if pr.NotFound {
		fmt.Fprintf(r.o.Stderr, "ipcflow: stage %s: %s: command not found\n", st.name(), pr.Argv[0])
		r.finished(st, exitInfo{code: 127, reported: true})
		return
	}
	pid, err := spawn(pr, sf.fds, pr.Argv, pr.Path)
	if errors.Is(err, syscall.ENOEXEC) && !pr.Shell {
		// A script without a #! line: shells run those themselves.
		path, argv, serr := shellCommand(st.name(), len(pr.Fds), st.sp.Stage.Command)
		if serr == nil {
			pid, err = spawn(pr, sf.fds, argv, path)
		}
	}
	if err != nil {
		msg := err.Error()
		if errors.Is(err, syscall.ENOENT) {
			msg = "command not found"
		}
		if pr.Shell {
			cmd = "stage shell"
		}
		code := 126
		if errors.Is(err, syscall.ENOENT) {
			code = 127
		}
		if _, serr := os.Stat(pr.Dir); pr.Dir != "" && serr != nil {
			cmd, msg, code = "dir "+pr.Dir, "no such directory", 126
		}
		fmt.Fprintf(r.o.Stderr, "ipcflow: stage %s: %s: %s\n", st.name(), cmd, msg)
		r.finished(st, exitInfo{code: code, reported: true})
		return
	}
	st.pid = pid
	st.state = stRunning
	st.started = time.Now()
	r.byPid[pid] = st
	if r.guard != nil {
		if err := r.guard.Watch(pid); err != nil {
			fmt.Fprintf(r.o.Stderr, "ipcflow: %v\n", err)
		}
	}
}

// acquire takes one unit of each semaphore st uses, in the global order
// (by name), then reports to the supervisor. On failure or cancellation it
// gives back what it took.
func (r *run) acquire(ctx context.Context, st *stageRT, ready chan<- acquired) {
	var taken []*locks.Sem
	for _, name := range sortedUses(st.sp) {
		sem := r.sems[name]
		if err := sem.Wait(ctx); err != nil {
			for _, s := range taken {
				s.Post()
			}
			ready <- acquired{st: st, err: err}
			return
		}
		taken = append(taken, sem)
	}
	ready <- acquired{st: st, held: taken}
}

type acquired struct {
	st   *stageRT
	held []*locks.Sem
	err  error
}

// skip closes a stage's ends without starting it, so that its neighbours
// see end of file or EPIPE.
func (r *run) skip(st *stageRT, why string) {
	st.state = stSkipped
	r.takeStageFiles(st).release()
	if why != "" {
		fmt.Fprintf(r.o.Stderr, "ipcflow: stage %s: skipped: %s\n", st.name(), why)
	}
}
