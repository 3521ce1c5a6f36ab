package exec

// What the supervisor (flow.supervise) decides: a stage's state from
// pending to done, when the next stages may start, how a stage's end
// counts, and how the flow is stopped.

import (
	"context"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/isolate"
	"github.com/ipcflow/ipcflow/restart"
	"github.com/ipcflow/ipcflow/stats"
)

// stageState is where a stage of a live flow is.
type stageState int

const (
	stPending   stageState = iota // waits for its `after` stages
	stAcquiring                   // waits for its semaphores
	stRunning
	stBackoff // a restartable stage between copies (restart.go)
	stDone
	stSkipped
)

// liveStage is a stage of a live flow: its plan, the process built for it
// and what became of it.
type liveStage struct {
	plan    *StagePlan
	proc    *Process // what newFlow built; rebuilt when an `after` stage starts
	state   stageState
	pid     int
	started time.Time
	release func() error // gives back the semaphore units it holds, if any
	exit    exitInfo
	rusage  unix.Rusage
	io      stats.IO // what it read and wrote, read before it was reaped (with --stats)
	idx     int      // its index in the plan, and the Recorder's

	// outputs are the wires it writes into (not its stderr), by the
	// identity of its end, and readersLeft the readers of those wires that
	// ended while it still held them (reap.go).
	outputs     map[int]fileID
	readersLeft map[wireReader]bool

	// A restartable stage (restart.go): the files ipcflow holds for its
	// next copy, its budget, the timer of its back-off, whether the
	// budget was spent, and how its last failed copy ended.
	limits      *isolate.Group // its cgroups, if it has a limit clause (limit.go)
	held        *stageFiles
	budget      *restart.Budget
	timer       *time.Timer
	spent       bool
	lastFailure string
}

func (st *liveStage) name() string { return st.plan.Stage.Name }

// exitInfo is how a stage ended.
type exitInfo struct {
	code     int         // exit code, or 128+N for signal N
	signal   unix.Signal // the signal that killed it, or 0
	reported bool        // ipcflow already said why (command not found)
	epipe    bool        // exited non-zero after every reader of its output had finished
	limit    string      // the limit it was killed for ("memory limit 64MiB"), or ""
}

// ok: exit 0, or killed by SIGPIPE because its reader finished (SPEC 6).
// metEPIPE reports whether st ended with an error of its own after every
// reader of its output had gone: a program that catches EPIPE (or ignores
// SIGPIPE) does so, and that is `yes | head`, not a failure (nor a reason
// to restart it: nobody is left to write to).
func (f *flow) metEPIPE(st *liveStage, e exitInfo) bool {
	return !e.ok() && e.signal == 0 && f.readersGone(st)
}

func (e exitInfo) ok() bool { return e.code == 0 || e.signal == unix.SIGPIPE || e.epipe }

func (e exitInfo) String() string {
	if e.limit != "" {
		return "killed: " + e.limit
	}
	if e.signal != 0 {
		return "killed by signal " + unix.SignalName(e.signal)
	}
	return fmt.Sprintf("exit status %d", e.code)
}

// setStatus sets the flow's exit status unless something came first.
func (f *flow) setStatus(code int) {
	if f.status < 0 {
		f.status = code
	}
}

// stop tears the flow down: pending stages are skipped, running ones get
// sig now and SIGKILL after the grace period.
func (f *flow) stop(sig unix.Signal, why string, failed *liveStage) {
	if !f.stopping {
		f.stopping = true
		f.cancel()
		for _, st := range f.stages {
			if st.state == stPending {
				f.skip(st, skipReason(st, why, failed))
			}
		}
		f.graceEnd = time.Now().Add(f.o.Grace)
		f.grace = time.After(f.o.Grace)
		f.endBackoffs()
	}
	f.signalAll(sig)
}

// skipReason says why a stage still waiting for its after stages is
// skipped when the flow stops: the failed stage's failure when the stage
// waits for it (directly or through others), else that the flow stopped,
// and why: a new user read `main2: skipped: prep failed` as main2 waiting
// for prep, when it waited for another stage that had succeeded.
func skipReason(st *liveStage, why string, failed *liveStage) string {
	if why == "" {
		return ""
	}
	if failed != nil && afterClosure(st.plan.Stage)[failed.plan.Stage] {
		return why
	}
	return "the flow stopped (" + why + ")"
}

// active reports whether a stage runs or waits for its semaphores.
func (f *flow) active() bool {
	for _, st := range f.stages {
		if st.state == stRunning || st.state == stAcquiring || st.state == stBackoff {
			return true
		}
	}
	return false
}

// readyStages returns the pending stages whose `after` stages all
// succeeded, and skips those one of whose `after` stages did not.
func (f *flow) readyStages() []*liveStage {
	var ready []*liveStage
	for changed := true; changed; {
		changed = false
		for _, st := range f.stages {
			if st.state != stPending {
				continue
			}
			go_, why := true, ""
			for _, dep := range st.plan.Stage.After {
				d := f.stage(dep.Name)
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
				f.skip(st, why)
				changed = true
			} else if go_ {
				st.state = stAcquiring // claimed; launch decides
				f.rec.Ready(st.idx)
				ready = append(ready, st)
			}
		}
	}
	return ready
}

// launch starts stages: at once when they use no semaphore, else once a
// goroutine has taken their units.
func (f *flow) launch(ctx context.Context, ready chan acquired, sts []*liveStage) {
	for _, st := range sts {
		if f.stopping {
			// One of those before it could not start (127, 126) and
			// the flow is being torn down: start no more.
			f.skip(st, "")
			continue
		}
		if len(st.plan.Stage.Uses) == 0 {
			f.startStage(st)
			continue
		}
		go f.acquire(ctx, st, ready)
	}
}

func (f *flow) stage(name string) *liveStage {
	for _, st := range f.stages {
		if st.name() == name {
			return st
		}
	}
	return nil
}

// killLeftovers gives what stopped stages left in their groups the rest of
// the grace period after SIGTERM, then SIGKILL: the loop above ends when
// the stages' own processes have, which may be before that.
func (f *flow) killLeftovers() {
	for f.reap(); time.Now().Before(f.graceEnd) && f.groupsLeft(); f.reap() {
		time.Sleep(10 * time.Millisecond)
	}
	f.signalAll(unix.SIGKILL)
	if f.cgroup != nil {
		f.cgroup.Kill() // and what left its stage's group
	}
}

// groupsLeft reports whether a process of any stage's group is alive.
func (f *flow) groupsLeft() bool {
	for _, st := range f.stages {
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
func (f *flow) signalAll(sig unix.Signal) {
	for _, st := range f.stages {
		if st.pid > 0 {
			unix.Kill(-st.pid, sig)
		}
	}
}

// finished records a stage's end: gives back its semaphore units and, if it
// failed, reports it and lets the run react (teardown unless --keep-going).
func (f *flow) finished(st *liveStage, e exitInfo) {
	if f.again(st, e) {
		return
	}
	f.letGo(st)
	st.state = stDone
	st.exit = e
	takeRemoteFigures(st)
	defer func() { f.rec.Ended(st.idx, statusWords(st.exit), &st.rusage, st.io) }()
	if st.release != nil {
		st.release()
		st.release = nil
	}
	if f.metEPIPE(st, e) {
		st.exit.epipe = true
		return
	}
	if e.ok() {
		if st.spent {
			fmt.Fprintf(f.o.Stderr, "ipcflow: stage %s: %v; not restarted%s\n", st.name(), e, spentNote(st))
		}
		return
	}
	if f.stopping {
		return // most likely our own SIGTERM or SIGKILL: not news
	}
	if !e.reported || st.spent {
		fmt.Fprintf(f.o.Stderr, "ipcflow: stage %s: %v%s\n", st.title(), e, spentNote(st))
	}
	f.setStatus(e.code)
	if !f.o.KeepGoing {
		f.stop(unix.SIGTERM, st.title()+" failed", st)
	}
}

// reportLoss says, one line per edge, how many datagrams a udp edge lost:
// SPEC lets udp drop under overload, but not silently. It does not change
// the exit status; --stats has the same figure.
func (f *flow) reportLoss() {
	for i, w := range f.wires {
		if w.ch == nil {
			continue
		}
		if lost := w.ch.Stats().Lost; lost > 0 {
			wr := f.plan.Wires[i]
			fmt.Fprintf(f.o.Stderr, "ipcflow: edge %s (%s): %d datagrams lost\n", wr.ID, strings.TrimPrefix(wr.Purpose, "edge "), lost)
		}
	}
}
