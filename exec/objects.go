package exec

// A run's objects: the run directory, the guardian, the semaphores and
// lease server, every wire's channel or pipe; made before any stage
// starts and removed at the end, whatever the end.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ipcflow/ipcflow/budget"
	"github.com/ipcflow/ipcflow/channels"
	"github.com/ipcflow/ipcflow/contain"
	"github.com/ipcflow/ipcflow/locks"
	"github.com/ipcflow/ipcflow/movers"
)

// run is one run of a plan: the objects it made and the stages' state.
// Only the supervisor's goroutine (supervise.go) touches it after newRun.
type run struct {
	plan   *Plan
	names  RunNames
	o      Options
	rd     *RunDir
	guard  *Guardian
	cgroup *contain.Group // nil: process groups only (contain.go)
	// closedOwn: ipcflow's fd 1 or 2 was closed when it started; stages
	// get it closed too (stdio.go).
	closedOwn [3]bool
	sigs      *runSignals // caught from newRun on (signals.go)
	wires     []*rtWire
	null      *os.File

	sems  map[string]*locks.Sem
	lease *locks.LeaseServer

	movers     []movers.Running
	moverPlans []*MoverPlan

	stages []*stageRT
	byPid  map[int]*stageRT

	status   int  // the flow's exit status; -1 until something sets it
	stopping bool // teardown has begun
	cancel   context.CancelFunc
	grace    <-chan time.Time // SIGKILL time, once stopping
	graceEnd time.Time        // when grace fires
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
	if err := checkFileBudget(plan); err != nil {
		return nil, err
	}
	rd, err := NewRunDir()
	if err != nil {
		return nil, err
	}
	r = &run{plan: plan, o: o, rd: rd, byPid: map[int]*stageRT{}, sems: map[string]*locks.Sem{}}
	if out, errs := closedStdio(); out || errs {
		r.closedOwn = [3]bool{false, out, errs}
		for fd := 1; fd <= 2; fd++ {
			if r.closedOwn[fd] {
				closeOwnFd(fd)
			}
		}
	}
	defer func() {
		if err != nil {
			// The cause first, then whatever its clean-up met.
			err = errors.Join(err, r.teardownObjects(), r.removeRecordings())
			if r.sigs != nil {
				r.sigs.stop()
			}
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
	tasks := 0
	for _, st := range r.stages {
		tasks += stageTasks(st.pr, st.sp.Stage.Script)
	}
	if err := checkProcessBudget(len(r.stages), tasks); err != nil {
		return r, err
	}
	// Asked for now, once the budget allows the thread it takes, while the
	// rest is made (signals.go).
	r.sigs = catchSignals()
	if r.guard, err = StartGuardian(rd); err != nil {
		return r, err
	}
	// The guardian starts meanwhile (guard.go); after a crash it finds the
	// directory, or nothing yet to remove.
	if err := rd.Create(); err != nil {
		return r, err
	}
	if err := r.newCgroup(); err != nil {
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
		if r.lease, err = locks.ServeLeases(filepath.Join(rd.Path, lockSocket), r.sems); err != nil {
			return r, err
		}
	}
	env := rd.ChannelEnv()
	for _, w := range plan.Wires {
		rw := &rtWire{}
		r.wires = append(r.wires, rw)
		if w.Internal() {
			if rw.r, rw.w, err = budget.Pipe(w.Spec.Options.Size); err != nil {
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

// removeRecordings removes the mmap path= files a run that failed to set
// up had already made. A recording stays after a run (SPEC 4), but this
// one never ran: the file is empty, and left there it would make the next
// run fail ("already exists"). Each channel removes only the file it made.
func (r *run) removeRecordings() error {
	var errs []error
	for _, rw := range r.wires {
		if d, ok := rw.ch.(interface{ DiscardRecording() error }); ok {
			errs = append(errs, d.DiscardRecording())
		}
	}
	return errors.Join(errs...)
}

// teardownObjects closes and removes everything the run made, and returns
// what could not be removed.
func (r *run) teardownObjects() error {
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
	// Whatever of the stages is still alive goes before their objects:
	// in a cgroup, also what left their process groups.
	if r.cgroup != nil {
		if err := r.cgroup.Close(); err != nil {
			fmt.Fprintf(r.o.Stderr, "ipcflow: %v\n", err)
		}
	}
	// Names first, then the semaphores: closing one lets go of the lock
	// that tells `ipcflow clean` its run is alive (locks.InUse).
	err := r.rd.Remove()
	for _, s := range r.sems {
		s.Close()
	}
	if r.guard != nil {
		if gerr := r.guard.Release(); gerr != nil && !errors.Is(gerr, os.ErrClosed) {
			// It never ran: the run went unguarded (a SIGKILL would have
			// left its objects for `ipcflow clean`).
			fmt.Fprintf(r.o.Stderr, "ipcflow: warning: %v\n", gerr)
		}
	}
	return err
}
