package exec

// Restarts of a replicated stage's copies (SPEC 11, 14; docs/replicas.md,
// "Restarts"). The stage's `restart` clause applies per copy, inside the
// replica runner: the runner is the stage's process, and ipcflow's
// supervisor does not restart it for a copy's failure (restartable). The
// runner gets the policy in its runnerConfig, keeps a restart.Budget per
// copy (package restart decides, as for a stage), and:
//
//	ordered    runs a block whose process failed again, over the same
//	           block memfd (opened anew, at offset 0) into a new output
//	           memfd, after the back-off: the block's output is the last
//	           process's, so a retry that succeeds leaves the joined
//	           output exactly as without the failure.
//	unordered  starts long-lived copy k again over the same input and
//	merge      output pipes, which the runner holds while the copy is
//	           down: its feeder blocks (or the others take the blocks),
//	           the line merger or the merge command sees one stream.
//
// A copy's 1 is not a failure (the exit status 1 rule), SIGPIPE is
// never one, nor an end after the merge command's; nothing restarts
// once the runner is stopped (a failure, the reader gone, or teardown's
// SIGTERM, which ends the runner itself).

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/restart"
	"github.com/ipcflow/ipcflow/stats"
)

// restartsEnv is the variable that tells a copy how many times it was
// restarted, as a restartable stage's copies are told (restart.go).
const restartsEnv = "IPCFLOW_RESTARTS"

// setUpRestarts makes a budget per copy when the stage has a restart
// policy, and drops an inherited IPCFLOW_RESTARTS from the copies'
// environment (each process gets its own).
func (r *replicaRunner) setUpRestarts() {
	if r.cfg.Restart == nil {
		return
	}
	r.budgets = make([]*restart.Budget, r.cfg.Copies)
	for k := range r.budgets {
		r.budgets[k] = restart.New(*r.cfg.Restart)
	}
	r.env, _, _ = takeVar(r.env, restartsEnv)
}

// startCopy starts a process of copy k with fds as its 0, 1, 2; again:
// after a failure of the copy (refused with errStopped once the runner
// is stopped). Under a restart policy the process is told how many times
// the copy was restarted.
func (r *replicaRunner) startCopy(k int, fds []int, again bool) (int, time.Time, error) {
	env := r.env
	if r.budgets != nil {
		r.mu.Lock()
		n := r.budgets[k].Restarts
		r.mu.Unlock()
		env = append(env[:len(env):len(env)], restartsEnv+"="+strconv.Itoa(n))
	}
	t0 := time.Now()
	pid, err := r.start(r.cfg.Copy, fds, k, env, again)
	return pid, t0, err
}

// again decides whether copy k is started again after its process, what
// names it, started at started and ended with ws; inputEnded: the copy's
// input had ended (a block's process always has its whole block), so an
// exit 0 or 1 was its work done even under `restart always`. A restart
// is said on stderr, as a stage's is, and wait is its back-off; when the
// budget is spent instead, note is what the line reporting the copy's
// failure adds.
func (r *replicaRunner) again(k int, what string, ws syscall.WaitStatus, started time.Time, inputEnded bool) (restart bool, wait time.Duration, note string) {
	if r.budgets == nil || ws.Signaled() && ws.Signal() == syscall.SIGPIPE || r.mergeEnded.Load() {
		// Nobody reads what it would write: the reader of its output
		// finished (SIGPIPE), or the merge command did, and a copy
		// that met EPIPE exits with an error of its own.
		return false, 0, ""
	}
	failed := stats.CopyFailed(unix.WaitStatus(ws)) // as the copy table records it
	if !failed && (!r.cfg.Restart.Always || inputEnded) {
		return false, 0, ""
	}
	r.mu.Lock()
	if r.aborted { // a failure, the reader gone: no restart
		r.mu.Unlock()
		return false, 0, ""
	}
	b := r.budgets[k]
	d := b.Decide(started, time.Now(), failed)
	restarts, spent := b.Restarts, ""
	if d.Spent {
		spent = budgetSpent(b) // b is read under mu, as it is written
	}
	r.mu.Unlock()
	switch {
	case d.Restart:
		fmt.Fprintf(os.Stderr, "ipcflow: stage %s: %s: %s; restarting in %v (restart %d)\n", r.cfg.Stage, what, r.copyEndText(ws), d.Wait, restarts)
		return true, d.Wait, ""
	case d.Spent && failed:
		return false, 0, spent
	case d.Spent:
		fmt.Fprintf(os.Stderr, "ipcflow: stage %s: %s: %s; not restarted%s\n", r.cfg.Stage, what, endText(ws), spent)
	}
	return false, 0, ""
}

// backoff waits d, or until the runner is stopped: then false.
func (r *replicaRunner) backoff(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return !r.isAborted()
	case <-r.stopped:
		return false
	}
}

// runLong reaps long-lived copy k, whose first process pid started at
// started, and judges it; under a restart policy a process that ended
// before its time is followed by another over the same input and output
// pipes (inR, outW: held by the runner until the copy ends for good, -1
// without a policy).
func (r *replicaRunner) runLong(k, pid int, started time.Time, inR, outW int) {
	what := fmt.Sprintf("copy %s[%d]", r.cfg.Stage, k)
	if inR >= 0 {
		defer func() {
			// Its end for good: its feeder meets EPIPE (the others
			// take the rest), its reader end of file.
			unix.Close(inR)
			unix.Close(outW)
		}()
	}
	for {
		e := r.waitEnd(pid, k)
		// Its input ended when its feeder closed it (loaded first: no
		// byte comes after) and the pipe holds nothing the process left
		// unread. A feeder that had handed out its last block long ago
		// still leaves up to a pipe's worth for the copy: under restart
		// always the next process reads it.
		closed := r.inputClosed[k].Load()
		unread := unreadBytes(inR)
		restart, wait, note := r.again(k, what, e.ws, started, closed && unread == 0)
		aborted := r.forget(pid, k, e, restart)
		if !restart {
			r.judge(e.ws, aborted, what, note)
			r.reportUnread(k, what, e.ws, aborted, inR)
			return
		}
		if !r.backoff(wait) {
			return
		}
		var err error
		if pid, started, err = r.startCopy(k, []int{inR, outW, 2}, true); err != nil {
			if err != errStopped {
				r.startFailed(err)
			}
			return
		}
	}
}

// unreadBytes is how many bytes the pipe whose read end is inR holds
// (FIONREAD); 0 for -1 or when it cannot tell.
func unreadBytes(inR int) int {
	if inR < 0 {
		return 0
	}
	n, err := unix.IoctlGetInt(inR, unix.TIOCINQ) // FIONREAD
	if err != nil {
		return 0
	}
	return n
}

// reportUnread says on stderr that copy k's last process (what names
// it), which ended with ws and is not restarted, left bytes of its input
// unread in its pipe (inR, the runner's read end): ipcflow took them
// from upstream, and nobody reads them now. Not said after a stop (a
// failure, the reader gone, the merge command ended), where the rest of
// the input is dropped anyway, nor for a failure, which the stage's
// status reports.
func (r *replicaRunner) reportUnread(k int, what string, ws syscall.WaitStatus, aborted bool, inR int) {
	if aborted || r.mergeEnded.Load() || r.isAborted() || !ws.Exited() || ws.ExitStatus() > 1 {
		return
	}
	if n := unreadBytes(inR); n > 0 {
		fmt.Fprintf(os.Stderr, "ipcflow: stage %s: %s: %s with %d bytes of its input not read; they are lost\n", r.cfg.Stage, what, endText(ws), n)
	}
}

// closeInput closes copy k's input, in, when its feeder is done: noted
// first, so that the copy's end after it is its work done.
func (r *replicaRunner) closeInput(k, in int) {
	r.inputClosed[k].Store(true)
	unix.Close(in)
}

// reopenBlock opens block memfd in anew for a block's next process: a
// file description of its own at offset 0, whatever the last process
// (or a child it left) did with the old one.
func reopenBlock(in int) (int, error) {
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(in), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open a block again: %w", err)
	}
	return fd, nil
}

// budgetSpent is what the line that reports an end adds when the
// restart budget b was spent: how many times it was restarted.
func budgetSpent(b *restart.Budget) string {
	return fmt.Sprintf(" (restarted %s; its restart budget of %s is spent)", restart.Times(b.Restarts), b.Describe())
}
