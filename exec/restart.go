package exec

// Restarts (SPEC 14): a stage with a `restart` clause that ends is started
// again, after a back-off, until its budget is spent (package restart
// decides). What makes a restart worth having is that the stage's edges
// outlive its copies: ipcflow keeps the files of the stage's fd table
// (takeStageFiles) open from the first copy's start to the stage's last
// end, instead of closing its copies right after the fork. So while the
// stage is down, whoever writes to it blocks when the edge is full rather
// than meeting EPIPE, whoever reads from it waits rather than seeing end
// of file, and the next copy gets the very same objects: unread bytes in a
// pipe, fifo or socket, a bridge's pipe from an mq, shm or mmap edge, are
// read by the next copy (docs/supervision.md says it per edge type).
//
//	copy ends ──► finished ──► again: restart? ──no──► the stage's end (files let go)
//	                               │yes
//	                               ▼
//	             stBackoff, timer ──► f.due ──► startStage (same files)
//
// A copy's leftovers in its process group are killed before the next one
// starts, as systemd's KillMode=control-group does: they could hold the
// edges and read the next copy's input.

import (
	"fmt"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/restart"
)

// restartable reports whether ipcflow restarts st: it has a restart
// clause and is no replica runner, whose policy applies per copy inside
// the runner (replicarestart.go), not to the runner.
func (st *liveStage) restartable() bool {
	return st.plan.Stage.Restart != nil && !st.plan.replicaRunner()
}

// stageFiles returns the files of st's fd table for the copy about to
// start: taken from the wires once, and for a restartable stage kept
// (st.held) for every later copy. hold reports whether the caller must
// leave them open.
func (f *flow) stageFiles(st *liveStage) (sf *stageFiles, hold bool) {
	if !st.restartable() {
		return f.takeStageFiles(st), false
	}
	if st.held == nil {
		st.held = f.takeStageFiles(st)
		st.budget = restart.New(*st.plan.Stage.Restart)
	}
	return st.held, true
}

// copyEnv is the environment of st's next copy: a restartable stage's
// copies are told how many times it was restarted (IPCFLOW_RESTARTS, as
// Kubernetes' restartCount), so a command can tell a first start from a
// later one.
func copyEnv(st *liveStage, env []string) []string {
	if !st.restartable() {
		return env
	}
	return append(env[:len(env):len(env)], restartsEnv+"="+strconv.Itoa(st.budget.Restarts))
}

// again decides whether the copy of st that ended with e is followed by
// another, and if so schedules it and returns true. Nothing restarts once
// teardown has begun, nor a copy that ended because its readers finished
// (SIGPIPE, EPIPE): there is nobody left to write to.
func (f *flow) again(st *liveStage, e exitInfo) bool {
	if !st.restartable() || st.budget == nil || f.stopping || e.signal == unix.SIGPIPE {
		return false
	}
	if f.metEPIPE(st, e) {
		return false
	}
	now := time.Now()
	d := st.budget.Decide(st.started, now, !e.ok())
	st.spent = d.Spent
	if !d.Restart {
		return false
	}
	if st.pid > 0 {
		unix.Kill(-st.pid, unix.SIGKILL) // the dead copy's leftovers
	}
	st.state = stBackoff
	st.exit = e
	if !e.ok() {
		st.lastFailure = e.String()
	}
	fmt.Fprintf(f.o.Stderr, "ipcflow: stage %s: %v; restarting in %v (restart %d)\n", st.name(), e, d.Wait, st.budget.Restarts)
	f.rec.Restarted(st.idx, st.lastFailure, d.Wait)
	st.timer = time.AfterFunc(d.Wait, func() { f.due <- st })
	return true
}

// restartDue starts st's next copy, when its back-off has passed and the
// flow is not being torn down.
func (f *flow) restartDue(st *liveStage) {
	if st.state != stBackoff || f.stopping {
		return
	}
	f.startStage(st)
}

// letGo ends a restartable stage for good: ipcflow closes the files it
// held for the next copy, so its neighbours see end of file or EPIPE now,
// and the broken-pipe allowance of those still writing to it is noted
// (reap.go) as it is when a stage without restarts is reaped.
func (f *flow) letGo(st *liveStage) {
	if st.timer != nil {
		st.timer.Stop()
		st.timer = nil
	}
	if st.held != nil {
		st.held.release()
		st.held = nil
		f.noteReaderGone(st)
	}
}

// endBackoffs ends the stages waiting to restart, when the flow stops:
// each ends with the status of its last copy, and starts no more.
func (f *flow) endBackoffs() {
	for _, st := range f.stages {
		if st.state == stBackoff {
			f.finished(st, st.exit)
		}
	}
}

// spentNote is what the line that reports a stage's end adds when its
// restart budget was spent: how many times it was restarted.
func spentNote(st *liveStage) string {
	if !st.spent {
		return ""
	}
	return budgetSpent(st.budget)
}

// addRusage adds a copy's resource use to what the stage's earlier
// copies used: times and counts add up, the largest resident set is the
// largest of any.
func addRusage(sum, ru *unix.Rusage) {
	sum.Utime.Sec += ru.Utime.Sec
	sum.Utime.Usec += ru.Utime.Usec
	sum.Stime.Sec += ru.Stime.Sec
	sum.Stime.Usec += ru.Stime.Usec
	for _, t := range []*unix.Timeval{&sum.Utime, &sum.Stime} {
		t.Sec += t.Usec / 1e6
		t.Usec %= 1e6
	}
	sum.Maxrss = max(sum.Maxrss, ru.Maxrss)
	sum.Minflt += ru.Minflt
	sum.Majflt += ru.Majflt
	sum.Inblock += ru.Inblock
	sum.Oublock += ru.Oublock
	sum.Nvcsw += ru.Nvcsw
	sum.Nivcsw += ru.Nivcsw
}
