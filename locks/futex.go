// Package locks holds ipcflow's synchronisation between processes: POSIX
// named semaphores compatible with glibc's sem_open (sem.go), the futex
// helpers they and the shared-memory ring are built on (this file), the
// lease server that holds a run's units for `ipcflow lock` (lease.go), and
// that command's work, a command run holding a unit (hold.go). It is a
// leaf: it imports nothing of ipcflow's.
package locks

import (
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The futex operations here are the shared (not FUTEX_PRIVATE_FLAG) kind:
// the words live in memory mapped by several processes.
const (
	futexWait       = 0 // FUTEX_WAIT
	futexWake       = 1 // FUTEX_WAKE
	futexWaitBitset = 9 // FUTEX_WAIT_BITSET: absolute timeouts
	futexBitsetAny  = 0xffffffff
	futexClockRT    = 256 // FUTEX_CLOCK_REALTIME
)

// FutexWait sleeps while *addr == val, until a FutexWake on addr, a signal,
// or the timeout (<= 0: no timeout). It returns nil when woken or when *addr
// no longer held val on entry (EAGAIN), unix.ETIMEDOUT on timeout and
// unix.EINTR when interrupted; callers re-check their condition in a loop.
func FutexWait(addr *uint32, val uint32, timeout time.Duration) error {
	var ts *unix.Timespec
	if timeout > 0 {
		t := unix.NsecToTimespec(int64(timeout))
		ts = &t
	}
	_, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWait,
		uintptr(val), uintptr(unsafe.Pointer(ts)), 0, 0)
	switch errno {
	case 0, unix.EAGAIN:
		return nil
	default:
		return errno
	}
}

// FutexWake wakes up to n waiters on addr and returns how many it woke.
func FutexWake(addr *uint32, n int) (int, error) {
	r, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWake,
		uintptr(n), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// SpinThenWait waits until cond() is true. It spins for a short while first
// (a wake-up of a process on another CPU costs 25-30 us; most waits on a busy
// ring end sooner than that), then sleeps on the futex word addr, which the
// other side must change and FutexWake after making cond true. seq is read
// before cond is tested so that a wake between the test and the sleep is not
// lost. The sleep is bounded by poll so that cond is re-tested even if a
// wake-up was missed (a peer that died between writing and waking).
func SpinThenWait(addr *uint32, cond func() bool, spins int, poll time.Duration) {
	for i := 0; i < spins; i++ {
		if cond() {
			return
		}
		spinPause()
	}
	for {
		seq := atomic.LoadUint32(addr)
		if cond() {
			return
		}
		FutexWait(addr, seq, poll)
	}
}

// spinPause gives the sibling hyper-thread a moment without yielding the CPU.
func spinPause() {
	for i := 0; i < 30; i++ {
		_ = i
	}
}
