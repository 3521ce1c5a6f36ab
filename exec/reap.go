package exec

// Reaping: the run's only wait4, by pid, and when a writer's non-zero exit
// counts as a broken pipe.

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// reap collects every child that exited. ipcflow is a child subreaper
// (see subreaper), so its children are its stages, the guardian, and
// orphans: what a stage's processes left when they died, reparented to
// ipcflow. It peeks (WNOWAIT) at which child is ready: a stage is reaped
// and judged; anything else is reaped and let go, so no zombie of the flow
// lingers (and a stage's group is empty once its processes are gone).
// Stages reaped in one go share a batch number: the kernel does not say
// which of them ended first, so none of them counts as having ended before
// another (see readersGone).
func (r *run) reap() {
	r.batch++
	var ended []*stageRT
	var infos []exitInfo
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if err == unix.EINTR {
			continue
		}
		pid := int(*(*int32)(unsafe.Pointer(uintptr(unsafe.Pointer(&info)) + 16))) // si_pid
		if err != nil || pid == 0 {
			break
		}
		if st := r.byPid[pid]; st != nil {
			if e, ok := r.wait(st, 0); ok {
				st.batch = r.batch
				ended = append(ended, st)
				infos = append(infos, e)
			}
			continue
		}
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err != nil && err != unix.EINTR {
			break
		}
		if r.guard != nil && pid == r.guard.Pid() {
			fmt.Fprintf(r.o.Stderr, "ipcflow: the run's guardian (pid %d) ended early: if ipcflow is killed now, its stages' children may outlive it\n", pid)
		}
	}
	for i, st := range ended {
		r.finished(st, infos[i])
	}
}

// subreaper makes ipcflow the parent of its stages' orphans, so that it
// reaps them (PID 1 in a container may not) and knows when a stage's
// group is really empty.
func subreaper() {
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// wait reaps st if it exited and says how.
func (r *run) wait(st *stageRT, flags int) (exitInfo, bool) {
	var ws unix.WaitStatus
	for {
		pid, err := unix.Wait4(st.pid, &ws, flags, &st.rusage)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid != st.pid {
			return exitInfo{}, false
		}
		break
	}
	delete(r.byPid, st.pid)
	var e exitInfo
	switch {
	case ws.Exited():
		e.code = ws.ExitStatus()
	case ws.Signaled():
		e.signal = ws.Signal()
		e.code = 128 + int(e.signal)
	}
	return e, true
}

// readersGone reports whether st writes its output (out and declared out
// ports) straight into other stages through pipes and every one of those
// stages ended before st did (was reaped in an earlier batch): then st's
// writes can only have met EPIPE. A reader reaped with st does not count:
// it may as well have ended because st closed its pipe, and a failure must
// never pass for a broken pipe.
func (r *run) readersGone(st *stageRT) bool {
	wires := map[int]bool{}
	for fd, e := range st.pr.Fds {
		if fd == 2 {
			continue // what it says on stderr is not its output
		}
		if e.Kind == EndWrite {
			wires[e.Wire] = true
		}
	}
	readers := 0
	for _, o := range r.stages {
		for _, e := range o.pr.Fds {
			if e.Kind != EndRead || !wires[e.Wire] {
				continue
			}
			if o.state != stDone || o.batch >= st.batch {
				return false
			}
			readers++
		}
	}
	// Every written wire must lead to a stage: output into a tee, a join
	// or ipcflow's own stdout has no reader that can be seen to finish.
	return readers > 0 && readers >= len(wires)
}
