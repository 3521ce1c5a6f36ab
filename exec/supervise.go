package exec

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The supervisor is one goroutine that owns every stage's state and the
// only wait4 of the run. It sleeps until one of:
//
//	SIGCHLD            reap what exited; start `after` stages whose turn came
//	a stage's sems     (a goroutine took them) start it
//	SIGINT/TERM/HUP    pass it to every stage's group, then teardown
//	SIGTSTP, SIGCONT   stop (^Z) and continue the stages with ipcflow
//	--timeout          teardown, status 124
//	grace expired      SIGKILL every group still there
//
// and returns when no stage runs or waits for its semaphores.

type stageState int

const (
	stPending   stageState = iota // waits for its `after` stages
	stAcquiring                   // waits for its semaphores
	stRunning
	stDone
	stSkipped
)

type stageRT struct {
	sp      *StagePlan
	pr      *Process
	state   stageState
	pid     int
	started time.Time
	release func() error // gives back the semaphore units it holds, if any
	exit    exitInfo
	rusage  unix.Rusage

	// outputs are the wires it writes into (not its stderr), by the
	// identity of its end, and readersLeft the readers of those wires that
	// ended while it still held them (reap.go).
	outputs     map[int]fileID
	readersLeft map[wireReader]bool
}

func (st *stageRT) name() string { return st.sp.Stage.Name }

// exitInfo is how a stage ended.
type exitInfo struct {
	code     int         // exit code, or 128+N for signal N
	signal   unix.Signal // the signal that killed it, or 0
	reported bool        // ipcflow already said why (command not found)
	epipe    bool        // exited non-zero after every reader of its output had finished
}

// ok: exit 0, or killed by SIGPIPE because its reader finished (SPEC 6).
func (e exitInfo) ok() bool { return e.code == 0 || e.signal == unix.SIGPIPE || e.epipe }

func (e exitInfo) String() string {
	if e.signal != 0 {
		return "killed by signal " + unix.SignalName(e.signal)
	}
	return fmt.Sprintf("exit status %d", e.code)
}

// run starts the stages and supervises them to the flow's exit status.
func (r *run) run() int {
	// Given back in the background: signal.Stop is a round trip with the
	// signal thread per signal too, 0.5 ms or more at the end of every
	// run, and mostly the process exits next.
	defer func() { go r.sigs.stop() }()
	sigs := r.sigs.sigs
	// The signals may still be on their way (signals.go): a stage that
	// exits before they are caught sends a SIGCHLD nobody sees, so the
	// loop reaps once when they are.
	caught := r.sigs.ready
	// Whoever reads ipcflow's stdout or stderr may stop (`ipcflow run
	// --label f 2>&1 | head`). Unless SIGPIPE is notified, Go kills the
	// process on a failed write to fd 1 or 2; notified, the write returns
	// EPIPE, the copier closes its source and the stage sees the closed
	// pipe, as in a shell. This is not ignoring SIGPIPE (that would be
	// inherited by every stage): a caught signal is reset to its default
	// at exec, so stages still die of it. (caught.pipes: nobody reads it.)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.cancel = cancel
	r.status = -1
	ready := make(chan acquired)
	var timeout <-chan time.Time
	if r.o.Timeout > 0 {
		t := time.NewTimer(r.o.Timeout)
		defer t.Stop()
		timeout = t.C
	}

	subreaper()
	if r.guard != nil {
		r.guard.Pid() // it exists before the first stage does (guard.go)
	}
	r.startMovers()
	r.launch(ctx, ready, r.readyStages())
	for r.active() {
		select {
		case <-caught:
			caught = nil
			r.reap()
		case sig := <-sigs:
			switch sig {
			case unix.SIGCHLD:
				r.reap()
			case unix.SIGTSTP:
				// ^Z reaches only ipcflow's group (the terminal's
				// foreground): stop the stages too, then ipcflow.
				r.signalAll(unix.SIGSTOP)
				unix.Kill(os.Getpid(), unix.SIGSTOP)
			case unix.SIGCONT:
				r.signalAll(unix.SIGCONT) // fg or bg: the stages go on too
			default:
				s := sig.(unix.Signal)
				r.setStatus(128 + int(s))
				if r.stopping {
					r.signalAll(unix.SIGKILL) // a second ^C: no more grace
				} else {
					r.stop(s, "")
				}
			}
		case a := <-ready:
			if a.err != nil || r.stopping {
				if a.release != nil {
					a.release()
				}
				r.skip(a.st, "")
				continue
			}
			a.st.release = a.release
			r.startStage(a.st)
		case <-timeout:
			fmt.Fprintf(r.o.Stderr, "ipcflow: timeout: the flow ran longer than %v\n", r.o.Timeout)
			r.setStatus(StatusTimeout)
			r.stop(unix.SIGTERM, "timeout")
		case <-r.grace:
			r.signalAll(unix.SIGKILL)
		}
		if !r.stopping {
			r.launch(ctx, ready, r.readyStages())
		}
	}
	if !r.stopping && r.groupsLeft() {
		// What the stages left running in their groups (`sleep 100 &`,
		// `sh -c 'server &'`) does not outlive the run: it gets what a
		// teardown gives, SIGTERM now and SIGKILL after the grace period.
		r.graceEnd = time.Now().Add(r.o.Grace)
		r.signalAll(unix.SIGTERM)
		r.killLeftovers()
	} else if r.stopping {
		r.killLeftovers()
	}
	if err := r.finishMovers(); err != nil {
		fmt.Fprintf(r.o.Stderr, "ipcflow: %v\n", err)
		r.setStatus(StatusSetup)
	}
	r.reportLoss()
	if err := r.teardownObjects(); err != nil {
		PrintMessage(r.o.Stderr, err.Error())
	}
	if r.status < 0 {
		return 0
	}
	return r.status
}

// setStatus sets the flow's exit status unless something came first.
func (r *run) setStatus(code int) {
	if r.status < 0 {
		r.status = code
	}
}

// stop tears the flow down: pending stages are skipped, running ones get
// sig now and SIGKILL after the grace period.
func (r *run) stop(sig unix.Signal, why string) {
	if !r.stopping {
		r.stopping = true
		r.cancel()
		for _, st := range r.stages {
			if st.state == stPending {
				r.skip(st, why)
			}
		}
		r.graceEnd = time.Now().Add(r.o.Grace)
		r.grace = time.After(r.o.Grace)
	}
	r.signalAll(sig)
}

// active reports whether a stage runs or waits for its semaphores.
func (r *run) active() bool {
	for _, st := range r.stages {
		if st.state == stRunning || st.state == stAcquiring {
			return true
		}
	}
	return false
}

// readyStages returns the pending stages whose `after` stages all
// succeeded, and skips those one of whose `after` stages did not.
func (r *run) readyStages() []*stageRT {
	var ready []*stageRT
	for changed := true; changed; {
		changed = false
		for _, st := range r.stages {
			if st.state != stPending {
				continue
			}
			go_, why := true, ""
			for _, dep := range st.sp.Stage.After {
				d := r.stage(dep.Name)
				switch {
				case d.state == stSkipped:
					why = dep.Name + " was skipped"
				case d.state == stDone && !d.exit.ok():
					why = dep.Name + " failed"
				case d.state != stDone:
					go_ = false
				}
				if why != "" {
					break
				}
			}
			if why != "" {
				r.skip(st, why)
				changed = true
			} else if go_ {
				st.state = stAcquiring // claimed; launch decides
				ready = append(ready, st)
			}
		}
	}
	return ready
}

// launch starts stages: at once when they use no semaphore, else once a
// goroutine has taken their units.
func (r *run) launch(ctx context.Context, ready chan acquired, sts []*stageRT) {
	for _, st := range sts {
		if r.stopping {
			// One of those before it could not start (127, 126) and
			// the flow is being torn down: start no more.
			r.skip(st, "")
			continue
		}
		if len(st.sp.Stage.Uses) == 0 {
			r.startStage(st)
			continue
		}
		go r.acquire(ctx, st, ready)
	}
}

func (r *run) stage(name string) *stageRT {
	for _, st := range r.stages {
		if st.name() == name {
			return st
		}
	}
	return nil
}

// killLeftovers gives what stopped stages left in their groups the rest of
// the grace period after SIGTERM, then SIGKILL: the loop above ends when
// the stages' own processes have, which may be before that.
func (r *run) killLeftovers() {
	for r.reap(); time.Now().Before(r.graceEnd) && r.groupsLeft(); r.reap() {
		time.Sleep(10 * time.Millisecond)
	}
	r.signalAll(unix.SIGKILL)
	if r.cgroup != nil {
		r.cgroup.Kill() // and what left its stage's group
	}
}

// groupsLeft reports whether a process of any stage's group is alive.
func (r *run) groupsLeft() bool {
	for _, st := range r.stages {
		if st.pid > 0 && unix.Kill(-st.pid, 0) == nil {
			return true
		}
	}
	return false
}

// signalAll sends sig to the process group of every stage that started,
// including those whose first process has ended: what it left running in
// its group (`sleep 100 &`) is still part of the stage. A group whose
// processes have all gone gives ESRCH, and its id cannot have been reused
// while any member lived.
func (r *run) signalAll(sig unix.Signal) {
	for _, st := range r.stages {
		if st.pid > 0 {
			unix.Kill(-st.pid, sig)
		}
	}
}

// finished records a stage's end: gives back its semaphore units and, if it
// failed, reports it and lets the run react (teardown unless --keep-going).
func (r *run) finished(st *stageRT, e exitInfo) {
	st.state = stDone
	st.exit = e
	if st.release != nil {
		st.release()
		st.release = nil
	}
	if !e.ok() && e.signal == 0 && r.readersGone(st) {
		// A program that catches EPIPE (or ignores SIGPIPE) exits with
		// an error of its own once its reader has gone: that is `yes |
		// head`, not a failure.
		st.exit.epipe = true
		return
	}
	if e.ok() {
		return
	}
	if r.stopping {
		return // most likely our own SIGTERM or SIGKILL: not news
	}
	if !e.reported {
		fmt.Fprintf(r.o.Stderr, "ipcflow: stage %s: %v\n", st.name(), e)
	}
	r.setStatus(e.code)
	if !r.o.KeepGoing {
		r.stop(unix.SIGTERM, st.name()+" failed")
	}
}

// reportLoss says, one line per edge, how many datagrams a udp edge lost:
// SPEC lets udp drop under overload, but not silently. It does not change
// the exit status; --stats has the same figure.
func (r *run) reportLoss() {
	for i, w := range r.wires {
		if w.ch == nil {
			continue
		}
		if lost := w.ch.Stats().Lost; lost > 0 {
			wr := r.plan.Wires[i]
			fmt.Fprintf(r.o.Stderr, "ipcflow: edge %s (%s): %d datagrams lost\n", wr.ID, strings.TrimPrefix(wr.Purpose, "edge "), lost)
		}
	}
}
