package exec

// The guardian's fork without exec. Forking a Go process leaves the child
// with one thread, a copy of the heap and runtime state that other threads
// may have held locked: the child must not allocate, grow its stack, take
// a lock or take a signal into Go's handlers. So, as the syscall package's
// own forkAndExecInChild does, the child runs nosplit code that makes raw
// system calls on memory prepared before the fork, with every signal
// blocked (blocked on the forking thread across clone, so it never runs a
// Go handler; the exec'd program unblocks what its runtime needs).

import (
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxWatched is how many stage groups one guardian remembers; a flow with
// more has the rest killed by their parent-death signal only.
const maxWatched = 1 << 16

// guardianChild is everything the forked guardian touches.
type guardianChild struct {
	pipe   int        // read end of ipcflow's pipe
	null   *byte      // "/dev/null"
	name   *byte      // its name in ps: "ipcflow-guard"
	path   *byte      // ipcflow's binary, for the reclaim role
	argv   []*byte    // NUL-terminated C strings, nil-terminated
	envv   []*byte    // likewise
	buf    [4096]byte // what one read brings
	line   [32]byte   // the line being read ("watch PGID" or "done")
	n      int        // bytes in line; past len(line): an overlong line, ignored
	groups [maxWatched]int32
	ng     int
}

func newGuardianChild(pipe int, path string, argv, env []string) (*guardianChild, error) {
	c := &guardianChild{pipe: pipe}
	var err error
	if c.null, err = syscall.BytePtrFromString("/dev/null"); err != nil {
		return nil, err
	}
	if c.name, err = syscall.BytePtrFromString("ipcflow-guard"); err != nil {
		return nil, err
	}
	if c.path, err = syscall.BytePtrFromString(path); err != nil {
		return nil, err
	}
	if c.argv, err = syscall.SlicePtrFromStrings(argv); err != nil {
		return nil, err
	}
	if c.envv, err = syscall.SlicePtrFromStrings(env); err != nil {
		return nil, err
	}
	return c, nil
}

// forkGuardian forks the calling process; the child runs c's loop and never
// returns. ForkLock keeps other goroutines from making fds in the middle
// (the child closes all it does not need anyway); the thread is locked so
// that the signal mask set here is the one clone copies.
func forkGuardian(c *guardianChild) (int, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	syscall.ForkLock.Lock()
	defer syscall.ForkLock.Unlock()
	all, old := ^uint64(0), uint64(0)
	if _, _, e := syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, _SIG_SETMASK, uintptr(unsafe.Pointer(&all)), uintptr(unsafe.Pointer(&old)), 8, 0, 0); e != 0 {
		return 0, e
	}
	pid, e := rawForkGuardian(c)
	syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, _SIG_SETMASK, uintptr(unsafe.Pointer(&old)), 0, 8, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(pid), nil
}

const (
	_SIG_SETMASK     = 2
	_PR_SET_NAME     = 15
	_CLOSE_RANGE_MAX = ^uint(0)
)

// rawForkGuardian is clone(SIGCHLD) and, in the child, the guardian.
//
//go:nosplit
//go:norace
func rawForkGuardian(c *guardianChild) (uintptr, syscall.Errno) {
	pid, _, e := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
	if e != 0 || pid != 0 {
		return pid, e
	}
	guardianMain(c)
	return 0, 0 // not reached
}

// guardianMain is the guardian process until ipcflow dies:
//
//	own process group (a ^C to ipcflow's must not reach it); fd 0 and 1
//	/dev/null (a shell's $(ipcflow run ...) must not wait for it); the pipe
//	on fd 3, stderr kept, every other fd closed (the run's lock above all:
//	it must go with ipcflow); then read "watch PGID" lines until "done"
//	(exit 0) or end of file (ipcflow is gone: SIGKILL every group, exec
//	the reclaim role).
//
//go:nosplit
//go:norace
func guardianMain(c *guardianChild) {
	syscall.RawSyscall6(syscall.SYS_SETPGID, 0, 0, 0, 0, 0, 0)
	syscall.RawSyscall6(syscall.SYS_PRCTL, _PR_SET_NAME, uintptr(unsafe.Pointer(c.name)), 0, 0, 0, 0)
	if c.pipe != 3 {
		if _, _, e := syscall.RawSyscall6(syscall.SYS_DUP3, uintptr(c.pipe), 3, 0, 0, 0, 0); e != 0 {
			syscall.RawSyscall6(syscall.SYS_EXIT_GROUP, 1, 0, 0, 0, 0, 0)
		}
	}
	if fd, _, e := syscall.RawSyscall6(syscall.SYS_OPENAT, ^uintptr(99) /* AT_FDCWD */, uintptr(unsafe.Pointer(c.null)), syscall.O_RDWR, 0, 0, 0); e == 0 {
		for _, to := range [2]uintptr{0, 1} {
			if fd != to {
				syscall.RawSyscall6(syscall.SYS_DUP3, fd, to, 0, 0, 0, 0)
			}
		}
	}
	if _, _, e := syscall.RawSyscall6(unix.SYS_CLOSE_RANGE, 4, uintptr(_CLOSE_RANGE_MAX), 0, 0, 0, 0); e != 0 {
		for fd := uintptr(4); fd < 4096; fd++ { // kernels before 5.9
			syscall.RawSyscall6(syscall.SYS_CLOSE, fd, 0, 0, 0, 0, 0)
		}
	}
	for {
		r, _, e := syscall.RawSyscall6(syscall.SYS_READ, 3, uintptr(unsafe.Pointer(&c.buf[0])), uintptr(len(c.buf)), 0, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 || r == 0 {
			break
		}
		for i := uintptr(0); i < r && i < uintptr(len(c.buf)); i++ {
			if b := c.buf[i]; b != '\n' {
				if c.n < len(c.line) {
					c.line[c.n] = b
				}
				c.n++
				continue
			}
			if guardianLine(c) {
				syscall.RawSyscall6(syscall.SYS_EXIT_GROUP, 0, 0, 0, 0, 0, 0)
			}
			c.n = 0
		}
	}
	for i := 0; i < c.ng && i < len(c.groups); i++ {
		syscall.RawSyscall6(syscall.SYS_KILL, uintptr(-c.groups[i]), uintptr(syscall.SIGKILL), 0, 0, 0, 0)
	}
	syscall.RawSyscall6(syscall.SYS_EXECVE, uintptr(unsafe.Pointer(c.path)), uintptr(unsafe.Pointer(&c.argv[0])), uintptr(unsafe.Pointer(&c.envv[0])), 0, 0, 0)
	syscall.RawSyscall6(syscall.SYS_EXIT_GROUP, 1, 0, 0, 0, 0, 0)
}

// guardianLine takes the line in c.line: "done" reports true; "watch PGID"
// remembers the group. Anything else is ignored.
//
//go:nosplit
//go:norace
func guardianLine(c *guardianChild) bool {
	l := &c.line
	if c.n == 4 && l[0] == 'd' && l[1] == 'o' && l[2] == 'n' && l[3] == 'e' {
		return true
	}
	if c.n <= 6 || c.n > len(l) || l[0] != 'w' || l[1] != 'a' || l[2] != 't' || l[3] != 'c' || l[4] != 'h' || l[5] != ' ' {
		return false
	}
	var pgid int32
	for i := 6; i < c.n && i < len(l); i++ {
		d := l[i]
		if d < '0' || d > '9' || pgid > 1<<27 {
			return false
		}
		pgid = pgid*10 + int32(d-'0')
	}
	if pgid > 1 && c.ng < len(c.groups) {
		c.groups[c.ng] = pgid
		c.ng++
	}
	return false
}
