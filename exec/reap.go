package exec

// Reaping: the run's only wait4, by pid, and when a writer's non-zero exit
// counts as a broken pipe.

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// reap collects every stage that exited. It peeks (WNOWAIT) at which child
// is ready and reaps only its own stages by pid, so that a child started by
// someone else in ipcflow (the guardian) is left to its owner. Stages
// reaped in one go share a batch number: the kernel does not say which of
// them ended first, so none of them counts as having ended before another
// (see readersGone).
func (r *run) reap() {
	r.batch++
	var ended []*stageRT
	var infos []exitInfo
	collect := func(st *stageRT, flags int) {
		if e, ok := r.wait(st, flags); ok {
			st.batch = r.batch
			ended = append(ended, st)
			infos = append(infos, e)
		}
	}
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
			collect(st, 0)
			continue
		}
		// Someone else's child is first in line: look at ours one by one.
		for _, st := range r.byPid {
			collect(st, unix.WNOHANG)
		}
		break
	}
	for i, st := range ended {
		r.finished(st, infos[i])
	}
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
