package exec

// Reaping: the run's only wait4, by pid, and when a writer's non-zero exit
// counts as a broken pipe.

import (
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/stats"
)

// reap collects every child that exited. ipcflow is a child subreaper
// (see subreaper), so its children are its stages, the guardian, and
// orphans: what a stage's processes left when they died, reparented to
// ipcflow. One wait4 for any child gives both its status and its rusage:
// a stage is judged; anything else is let go, so no zombie of the flow
// lingers (and a stage's group is empty once its processes are gone).
func (f *flow) reap() {
	var ended []*liveStage
	var infos []exitInfo
	for {
		var ws unix.WaitStatus
		var ru unix.Rusage
		want := -1
		if f.o.Measure {
			// What a stage read and wrote is in /proc only until it
			// is reaped.
			if want = waitExited(); want <= 0 {
				break
			}
			if st := f.byPid[want]; st != nil {
				st.io = st.io.Plus(stats.ReadIO(want)) // a restarted stage's copies add up
			}
		}
		pid, err := unix.Wait4(want, &ws, unix.WNOHANG, &ru)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			break
		}
		if st := f.byPid[pid]; st != nil {
			delete(f.byPid, pid)
			addRusage(&st.rusage, &ru)
			if !st.restartable() {
				// A restartable stage's ends are held for its next
				// copy: its reader is gone only when it is let go.
				f.noteReaderGone(st)
			}
			ended = append(ended, st)
			e := exitOf(ws)
			e.limit = limitKill(st)
			infos = append(infos, e)
			continue
		}
		if f.guard != nil && pid == f.guard.Pid() {
			fmt.Fprintf(f.o.Stderr, "ipcflow: the run's guardian (pid %d) ended early: if ipcflow is killed now, its stages' children may outlive it\n", pid)
		}
	}
	for i, st := range ended {
		f.finished(st, infos[i])
	}
}

// subreaper makes ipcflow the parent of its stages' orphans, so that it
// reaps them (PID 1 in a container may not) and knows when a stage's
// group is really empty.
func subreaper() {
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// exitOf says how a process ended, from its wait status.
func exitOf(ws unix.WaitStatus) exitInfo {
	var e exitInfo
	switch {
	case ws.Exited():
		e.code = ws.ExitStatus()
	case ws.Signaled():
		e.signal = ws.Signal()
		e.code = 128 + int(e.signal)
	}
	return e
}

// The broken-pipe allowance (SPEC 6: a stage that ended because its reader
// finished is a success) needs to know, for a writer that exits non-zero,
// whether its reader closed the pipe while the writer still held it. The
// order of the two exits does not tell: Linux closes an exiting process's
// fds (exit_files) before it makes the process waitable (exit_notify), so a
// reader that ends *because* its writer closed the pipe (end of file after
// a real failure) can be reaped before that writer. What tells is the state
// of the writer at the moment its reader is reaped: if the writer has not
// begun to exit (no PF_EXITING) and still holds its end of that wire, the
// reader did not finish because of the writer's exit, and every write the
// writer makes from then on meets EPIPE.

// wireReader is one reader stage of one wire.
type wireReader struct {
	wire   int
	reader *liveStage
}

// noteReaderGone is called as soon as st has been reaped: each stage still
// running that writes into a wire st read from, and that still holds its
// end of it, is marked as having lost that reader while it wrote.
func (f *flow) noteReaderGone(st *liveStage) {
	for _, e := range st.proc.Fds {
		if e.Kind != EndRead {
			continue
		}
		for _, w := range f.stages {
			id, writes := w.outputs[e.Wire]
			if w == st || w.state != stRunning || !writes || f.byPid[w.pid] == nil {
				continue
			}
			if holdsFile(w.pid, id) {
				if w.readersLeft == nil {
					w.readersLeft = map[wireReader]bool{}
				}
				w.readersLeft[wireReader{e.Wire, st}] = true
			}
		}
	}
}

// readersGone reports whether st writes its output (out and declared out
// ports) straight into other stages and every one of those stages finished
// while st still held the wire (noteReaderGone): then st's writes could
// only meet EPIPE. A reader that may have ended because st closed its end
// does not count: a failure must never pass for a broken pipe.
func (f *flow) readersGone(st *liveStage) bool {
	if len(st.outputs) == 0 {
		return false
	}
	readers := 0
	for _, o := range f.stages {
		for _, e := range o.proc.Fds {
			if _, written := st.outputs[e.Wire]; e.Kind != EndRead || !written {
				continue
			}
			if !st.readersLeft[wireReader{e.Wire, o}] {
				return false
			}
			readers++
		}
	}
	// Every written wire must lead to a stage: output into a tee, a join
	// or ipcflow's own stdout has no reader that can be seen to finish.
	return readers >= len(st.outputs)
}

// fileID names an open file the way the kernel does: device and inode.
type fileID struct{ dev, ino uint64 }

func fileIDOf(f *os.File) (fileID, bool) {
	var s unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &s); err != nil {
		return fileID{}, false
	}
	return fileID{s.Dev, s.Ino}, true
}

// pfExiting is the kernel's PF_EXITING task flag (include/linux/sched.h),
// set when a task enters do_exit, before it closes its files.
const pfExiting = 0x4

// holdsFile reports whether process pid is alive, has not begun to exit,
// and has file id open. Anything /proc cannot tell counts as "no".
func holdsFile(pid int, id fileID) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ppid pgrp session tty_nr tpgid flags ...; comm may
	// hold spaces and parentheses, so fields count from the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return false
	}
	f := bytes.Fields(stat[i+1:])
	if len(f) < 7 || f[0][0] == 'Z' || f[0][0] == 'X' {
		return false
	}
	flags, err := strconv.ParseUint(string(f[6]), 10, 64)
	if err != nil || flags&pfExiting != 0 {
		return false
	}
	dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	fds, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, fd := range fds {
		var s unix.Stat_t
		if unix.Stat(dir+fd.Name(), &s) == nil && s.Dev == id.dev && s.Ino == id.ino {
			return true
		}
	}
	return false
}
