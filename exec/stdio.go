package exec

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/isolate"
	"github.com/ipcflow/ipcflow/movers"
)

// A closed standard output or error. `ipcflow run f >&-` used to succeed
// with the output gone: the Go runtime opens /dev/null on any of fds 0-2
// found closed at start (runtime.checkfds), so ipcflow and its stages
// wrote into it. bash gives the command a closed fd and the command fails
// (`echo: write error: Bad file descriptor`, status 1); ipcflow now does
// the same for its stages, and its own writes there fail too. A closed
// standard input stays /dev/null, which reads as empty: most programs
// treat the two alike, and a stage that reads no input is common.

// closedStdio reports, for fds 1 and 2, whether ipcflow was started with
// that fd closed. The runtime's replacement is told apart from a real
// /dev/null by how it was opened: read-write, with a file description of
// its own. A shell's `>/dev/null` opens write-only, and daemon(3) and
// service managers share one description across fds 0-2. The false
// alarm: a read-write /dev/null of its own on fd 1 or 2 alone reads as
// closed (`1<>/dev/null`, or Python's subprocess.DEVNULL given for stdout
// but not stderr), and stages then fail to write there as under `>&-`.
// Nothing a process can see tells the two apart once the runtime has run
// (it records nothing); a custom entry point that looked before it did
// could. Give such a caller `>/dev/null` (write-only) instead.
func closedStdio() (out, err bool) {
	return runtimeNull(1), runtimeNull(2)
}

func runtimeNull(fd int) bool {
	if link, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd)); link != os.DevNull {
		return false
	}
	fl, e := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if e != nil || fl&unix.O_ACCMODE != unix.O_RDWR {
		return false
	}
	for other := 0; other < 3; other++ {
		if other != fd && sameDescription(fd, other) {
			return false
		}
	}
	return true
}

// sameDescription reports whether fds a and b of this process share one
// open file description (kcmp(2) KCMP_FILE).
func sameDescription(a, b int) bool {
	const kcmpFile = 0
	pid := uintptr(os.Getpid())
	r, _, e := unix.Syscall6(unix.SYS_KCMP, pid, pid, kcmpFile, uintptr(a), uintptr(b), 0)
	return e == 0 && r == 0
}

// closeOwnFd makes fd unwritable for ipcflow's own writes (a read-only
// /dev/null in its place, so that a later open cannot take the number).
func closeOwnFd(fd int) {
	if ro, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
		unix.Dup3(ro, fd, 0)
		unix.Close(ro)
	}
}

// withClosedStdio is pr, one of ipcflow's own processes before a stage's
// programs, told of the standard fds in fds that are closedFd
// (isolate.ClosedStdioEnv), or pr itself when none is.
func withClosedStdio(pr *Process, fds []uintptr) *Process {
	var closed []string
	for fd := 0; fd < 3 && fd < len(fds); fd++ {
		if fds[fd] == closedFd {
			closed = append(closed, strconv.Itoa(fd))
		}
	}
	if closed == nil {
		return pr
	}
	c := *pr
	c.Env = append(slices.Clip(pr.Env), isolate.ClosedStdioEnv+"="+strings.Join(closed, ","))
	return &c
}

// closeStdioAgain makes the standard fds that isolate.ClosedStdioEnv
// names unusable again, in the stage shell or the replica runner, and
// takes the variable out of its environment. fd 0 becomes a write-only
// /dev/null (reads fail), 1 and 2 read-only ones (writes fail), so that
// no later open takes the number; their programs inherit them so.
func closeStdioAgain() {
	for _, fd := range isolate.TakeClosedStdio(false) {
		if fd != 0 {
			closeOwnFd(fd)
		} else if wo, err := unix.Open(os.DevNull, unix.O_WRONLY|unix.O_CLOEXEC, 0); err == nil {
			unix.Dup3(wo, 0, 0)
			unix.Close(wo)
		}
	}
}

// closedFd is what syscall.ForkExec takes, in ProcAttr.Files, for an fd
// the child gets closed.
const closedFd = ^uintptr(0)

// closedDst stands for a mover whose one destination is an fd ipcflow got
// closed: it moves nothing and fails as a write there would, and its
// sources close at once, so their producers see a closed pipe (as a
// program writing into `>&-` dies in a shell pipeline).
func (f *flow) closedDst(mp *MoverPlan) movers.Running {
	for _, s := range mp.Srcs {
		if file := f.file(s); s.Kind != EndOwn {
			file.Close()
		}
	}
	return closedMover{}
}

type closedMover struct{}

func (closedMover) Wait() error  { return fmt.Errorf("write: %w", unix.EBADF) }
func (closedMover) Close() error { return nil }
