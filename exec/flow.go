package exec

// A flow, from its start to its end: newFlow makes its objects (the run
// directory, the guardian, the semaphores and lease server, every wire's
// channel or pipe) before any stage starts; supervise starts the stages
// and sees them to an exit status; teardown removes the objects, whatever
// the end.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/budget"
	"github.com/ipcflow/ipcflow/channels"
	"github.com/ipcflow/ipcflow/contain"
	"github.com/ipcflow/ipcflow/locks"
	"github.com/ipcflow/ipcflow/movers"
	"github.com/ipcflow/ipcflow/remote"
	"github.com/ipcflow/ipcflow/rundir"
	"github.com/ipcflow/ipcflow/stats"
)

// flow is a plan being run: the objects it made and its stages' state.
// Only the supervisor's goroutine (supervise) touches it after newFlow.
type flow struct {
	plan   *Plan
	names  FlowNames
	o      Options
	rd     *rundir.Dir
	guard  *Guardian
	cgroup *contain.Group // nil: process groups only (contain.go)
	// closedOwn: ipcflow's fd 1 or 2 was closed when it started; stages
	// get it closed too (stdio.go).
	closedOwn [3]bool
	sigs      *flowSignals // caught from newFlow on (signals.go)
	wires     []*liveWire
	null      *os.File

	sems  map[string]*locks.Sem
	lease *locks.LeaseServer
	hosts *remote.Hosts // remote stages' connections (remote.go)

	movers     []movers.Running
	moverPlans []*MoverPlan

	stages []*liveStage // in plan order, as Plan.Stages
	byPid  map[int]*liveStage
	due    chan *liveStage // restartable stages whose back-off has passed (restart.go)

	// rec measures the run (--stats, --monitor, ps); wireEdges says which
	// of its edges each wire carries (measure.go).
	rec       *stats.Recorder
	wireEdges [][]int
	control   *stats.Control

	status   int  // the flow's exit status; -1 until something sets it
	stopping bool // teardown has begun
	cancel   context.CancelFunc
	grace    <-chan time.Time // SIGKILL time, once stopping
	graceEnd time.Time        // when grace fires
}

// newFlow builds every stage's process and creates the run directory, the
// guardian, the semaphores and every wire's object. On error, whatever was
// made is removed again.
func newFlow(plan *Plan, o Options) (f *flow, err error) {
	if err := checkFileBudget(plan); err != nil {
		return nil, err
	}
	rd, err := rundir.New()
	if err != nil {
		return nil, err
	}
	f = &flow{plan: plan, o: o, rd: rd, byPid: map[int]*liveStage{}, sems: map[string]*locks.Sem{}}
	if out, errs := closedStdio(); out || errs {
		f.closedOwn = [3]bool{false, out, errs}
		for fd := 1; fd <= 2; fd++ {
			if f.closedOwn[fd] {
				closeOwnFd(fd)
			}
		}
	}
	defer func() {
		if err != nil {
			// The cause first, then whatever its clean-up met.
			err = errors.Join(err, f.teardown(), f.removeRecordings())
			if f.sigs != nil {
				f.sigs.stop()
			}
			f = nil
		}
	}()
	names := FlowNames{ID: rd.ID, Dir: rd.Path}
	f.names = names
	procs, err := plan.Processes(names)
	if err != nil {
		return f, err
	}
	for i, sp := range plan.Stages {
		f.stages = append(f.stages, &liveStage{plan: sp, proc: procs[i]})
	}
	tasks := 0
	for _, st := range f.stages {
		tasks += stageTasks(st.proc, st.plan.Stage.Script)
	}
	if err := checkProcessBudget(len(f.stages), tasks); err != nil {
		return f, err
	}
	// Asked for now, once the budget allows the thread it takes, while the
	// rest is made (signals.go).
	f.sigs = catchSignals()
	if f.guard, err = StartGuardian(rd); err != nil {
		return f, err
	}
	// The guardian starts meanwhile (guard.go); after a crash it finds the
	// directory, or nothing yet to remove.
	if err := rd.Create(); err != nil {
		return f, err
	}
	if err := f.newCgroup(); err != nil {
		return f, err
	}
	if err := f.newLimits(); err != nil {
		return f, err
	}
	for _, s := range plan.Graph.Sems {
		name := semPosixName(names, s.Name)
		if err := rd.Record(channels.KindSem, name); err != nil {
			return f, err
		}
		sem, err := locks.Create(name, uint32(s.Count))
		if err != nil {
			return f, fmt.Errorf("create semaphore %s: %w", s.Name, err)
		}
		f.sems[s.Name] = sem
	}
	if len(f.sems) > 0 {
		if f.lease, err = locks.ServeLeases(filepath.Join(rd.Path, lockSocket), f.sems); err != nil {
			return f, err
		}
	}
	if err := f.connectHosts(); err != nil {
		return f, err
	}
	env := channels.Env{RunDir: rd.Path, Prefix: rd.Prefix, Record: rd.Record, Made: rd.Made}
	for _, w := range plan.Wires {
		rw := &liveWire{}
		f.wires = append(f.wires, rw)
		if w.Internal() {
			if rw.r, rw.w, err = budget.Pipe(w.Spec.Options.Size); err != nil {
				return f, fmt.Errorf("pipe %s for %s: %w", w.ID, w.Purpose, err)
			}
			continue
		}
		if rw.ch, err = channels.Open(env, w.Spec); err != nil {
			return f, w.atEdge(plan.Graph.File, err)
		}
	}
	if f.null, err = os.OpenFile(os.DevNull, os.O_RDWR, 0); err != nil {
		return f, err
	}
	f.newRecorder()
	return f, nil
}

// The supervisor is one goroutine that owns every stage's state and the
// only wait4 of the flow. It sleeps until one of:
//
//	SIGCHLD            reap what exited; start `after` stages whose turn came
//	a stage's sems     (a goroutine took them) start it
//	SIGINT/TERM/HUP    pass it to every stage's group, then teardown
//	SIGTSTP, SIGCONT   stop (^Z) and continue the stages with ipcflow
//	--timeout          teardown, status 124
//	grace expired      SIGKILL every group still there
//
// and returns when no stage runs or waits for its semaphores.

// supervise starts the stages and supervises them to the flow's exit
// status, then tears the flow down.
func (f *flow) supervise() int {
	// Given back in the background: signal.Stop is a round trip with the
	// signal thread per signal too, 0.5 ms or more at the end of every
	// run, and mostly the process exits next.
	defer func() { go f.sigs.stop() }()
	sigs := f.sigs.sigs
	// The signals may still be on their way (signals.go): a stage that
	// exits before they are caught sends a SIGCHLD nobody sees, so the
	// loop reaps once when they are.
	caught := f.sigs.ready
	// Whoever reads ipcflow's stdout or stderr may stop (`ipcflow run
	// --label f 2>&1 | head`). Unless SIGPIPE is notified, Go kills the
	// process on a failed write to fd 1 or 2; notified, the write returns
	// EPIPE, the copier closes its source and the stage sees the closed
	// pipe, as in a shell. This is not ignoring SIGPIPE (that would be
	// inherited by every stage): a caught signal is reset to its default
	// at exec, so stages still die of it. (caught.pipes: nobody reads it.)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.cancel = cancel
	f.status = -1
	ready := make(chan acquired)
	// Each stage has at most one back-off timer pending: never blocks.
	f.due = make(chan *liveStage, len(f.stages))
	var timeout <-chan time.Time
	if f.o.Timeout > 0 {
		t := time.NewTimer(f.o.Timeout)
		defer t.Stop()
		timeout = t.C
	}

	subreaper()
	if f.guard != nil {
		f.guard.Pid() // it exists before the first stage does (guard.go)
	}
	f.startMovers()
	f.launch(ctx, ready, f.readyStages())
	f.rec.Start()
	f.serveControl()
	if f.o.Started != nil {
		f.o.Started(f.rec)
	}
	for f.active() {
		select {
		case <-caught:
			caught = nil
			f.reap()
		case sig := <-sigs:
			switch sig {
			case unix.SIGCHLD:
				f.reap()
			case unix.SIGTSTP:
				// ^Z reaches only ipcflow's group (the terminal's
				// foreground): stop the stages too, then ipcflow.
				if f.o.Suspend != nil {
					f.o.Suspend()
				}
				f.signalAll(unix.SIGSTOP)
				unix.Kill(os.Getpid(), unix.SIGSTOP)
			case unix.SIGCONT:
				f.signalAll(unix.SIGCONT) // fg or bg: the stages go on too
				if f.o.Resume != nil {
					f.o.Resume()
				}
			default:
				s := sig.(unix.Signal)
				f.setStatus(128 + int(s))
				if f.stopping {
					f.signalAll(unix.SIGKILL) // a second ^C: no more grace
				} else {
					f.stop(s, "", nil)
				}
			}
		case a := <-ready:
			if a.err != nil || f.stopping {
				if a.release != nil {
					a.release()
				}
				f.skip(a.st, "")
				continue
			}
			a.st.release = a.release
			f.startStage(a.st)
		case <-timeout:
			fmt.Fprintf(f.o.Stderr, "ipcflow: timeout: the flow ran longer than %v\n", f.o.Timeout)
			f.setStatus(StatusTimeout)
			f.stop(unix.SIGTERM, "timeout", nil)
		case st := <-f.due:
			f.restartDue(st)
		case <-f.grace:
			f.signalAll(unix.SIGKILL)
		}
		if !f.stopping {
			f.launch(ctx, ready, f.readyStages())
		}
	}
	if !f.stopping && f.groupsLeft() {
		// What the stages left running in their groups (`sleep 100 &`,
		// `sh -c 'server &'`) does not outlive the flow: it gets what a
		// teardown gives, SIGTERM now and SIGKILL after the grace period.
		f.graceEnd = time.Now().Add(f.o.Grace)
		f.signalAll(unix.SIGTERM)
		f.killLeftovers()
	} else if f.stopping {
		f.killLeftovers()
	}
	if err := f.finishMovers(); err != nil {
		fmt.Fprintf(f.o.Stderr, "ipcflow: %v\n", err)
		f.setStatus(StatusSetup)
	}
	f.reportLoss()
	f.rec.Stop()
	if err := f.teardown(); err != nil {
		PrintMessage(f.o.Stderr, err.Error())
	}
	status := max(f.status, 0)
	if f.o.Report != nil {
		f.o.Report(f.rec.Final(status))
	}
	f.rec.CloseCopies() // under the Recorder's lock: a ps answer may read them
	return status
}

// teardown closes and removes everything the flow made, and returns what
// could not be removed.
func (f *flow) teardown() error {
	f.control.Close()
	for _, st := range f.stages {
		f.letGo(st) // files still held for a next copy, if any
	}
	for _, m := range f.movers {
		m.Close()
	}
	for _, w := range f.wires {
		w.close()
	}
	if f.null != nil {
		f.null.Close()
	}
	if f.lease != nil {
		f.lease.Close()
	}
	f.hosts.Close()
	// Whatever of the stages is still alive goes before their objects:
	// in a cgroup, also what left their process groups.
	if f.cgroup != nil {
		if err := f.cgroup.Close(); err != nil {
			fmt.Fprintf(f.o.Stderr, "ipcflow: %v\n", err)
		}
	}
	if err := f.removeLimits(); err != nil {
		fmt.Fprintf(f.o.Stderr, "ipcflow: %v\n", err)
	}
	// Names first, then the semaphores: closing one lets go of the lock
	// that tells `ipcflow clean` its run is alive (locks.InUse).
	err := f.rd.Remove()
	for _, s := range f.sems {
		s.Close()
	}
	if f.guard != nil {
		if gerr := f.guard.Release(); gerr != nil && !errors.Is(gerr, os.ErrClosed) {
			// It never ran: the run went unguarded (a SIGKILL would have
			// left its objects for `ipcflow clean`).
			fmt.Fprintf(f.o.Stderr, "ipcflow: warning: %v\n", gerr)
		}
	}
	return err
}

// removeRecordings removes the mmap path= files a flow that failed to set
// up had already made. A recording stays after a run (SPEC 4), but this
// one never ran: the file is empty, and left there it would make the next
// run fail ("already exists"). Each channel removes only the file it made.
func (f *flow) removeRecordings() error {
	var errs []error
	for _, rw := range f.wires {
		if d, ok := rw.ch.(channels.Recording); ok {
			errs = append(errs, d.DiscardRecording())
		}
	}
	return errors.Join(errs...)
}

// liveWire is a wire's open object: an edge's channel or a pipe of ipcflow's.
type liveWire struct {
	ch   channels.Channel
	r, w *os.File
}

// take hands over the file for end e; the taker closes it.
func (w *liveWire) take(e End) *os.File {
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

func (w *liveWire) close() {
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
