package locks

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A POSIX named semaphore, byte for byte the object glibc's sem_open makes,
// so that C programs (and anything else on glibc) share it with ipcflow.
//
// The file /dev/shm/sem.NAME holds one sem_t (32 bytes on 64-bit Linux). Its
// first 16 bytes are glibc's struct new_sem for targets with 64-bit atomics
// (sysdeps/nptl/internaltypes.h); the rest is zero:
//
//	offset  size  field
//	0       8     data: value in the low 32 bits, nwaiters in the high 32
//	              (SEM_NWAITERS_SHIFT 32). The futex word is the low half
//	              (SEM_VALUE_OFFSET 0 on little-endian).
//	8       4     private: glibc's FUTEX_SHARED, 0x80. glibc XORs it
//	              into FUTEX_PRIVATE_FLAG (0x80), so its futex calls on a
//	              named semaphore are the shared kind; ours are too.
//	12      4     pad
//	16      16    zero
//
// The protocol is glibc's nptl/sem_waitcommon.c and sem_post.c (64-bit
// atomics variant):
//   - wait, fast path: CAS data -> data-1 while value > 0.
//   - wait, slow path: add 1<<32 (register as a waiter); loop: while value
//     is 0, FUTEX_WAIT(low word, 0); then CAS data -> data-1-(1<<32), taking
//     a unit and deregistering at once. Giving up (timeout, cancel)
//     subtracts 1<<32.
//   - post: CAS data -> data+1 (EOVERFLOW at SEM_VALUE_MAX = INT_MAX); if
//     the old nwaiters was > 0, FUTEX_WAKE(low word, 1).
//
// This layout and protocol are glibc's since the rewrite of the semaphores
// in 2.21 (2015): read in the 2.29/2.30 sources (sem_open.c,
// sem_waitcommon.c, sem_post.c, internaltypes.h) and the 2.34+ sem_open.c
// (semaphores moved into libc.so, same object), checked against the bytes
// glibc 2.36 (Debian 12) writes, and exercised against the system's glibc in
// both directions by the tests. glibc before 2.21 used another layout (value
// and nwaiters in two 32-bit fields) and is not supported.
const (
	semSize          = 32 // sizeof(sem_t) on 64-bit Linux
	semPrivateOffset = 8
	futexShared      = 0x80 // glibc's FUTEX_SHARED as stored in new_sem.private
	nwaitersShift    = 32
	nwaiterUnit      = uint64(1) << nwaitersShift
	valueMask        = uint64(math.MaxUint32)
	// SemValueMax is glibc's SEM_VALUE_MAX (INT_MAX): Post fails with
	// EOVERFLOW beyond it, and Create refuses a larger initial value.
	SemValueMax = math.MaxInt32
)

// ShmDir is where glibc keeps named semaphores (sem.NAME) and shm_open
// objects. glibc 2.34+ uses this path only; older ones looked for a tmpfs in
// the mount table, which is /dev/shm on every mainstream distribution.
const ShmDir = "/dev/shm"

// cancelPoll bounds each futex sleep of a cancellable Wait. Cancellation
// wakes the futex at once (see Wait); the bound only matters if that wake
// lands in the instant between the waiter's check of ctx and its sleep.
const cancelPoll = 250 * time.Millisecond

// Sem is an open named semaphore. Its methods may be called from several
// goroutines at once, except Close, which must come after every other call
// has returned.
type Sem struct {
	name string // POSIX name, "/NAME"
	mem  []byte // the mapped sem_t
	data *uint64
	word *uint32 // futex word: low 32 bits of data
	held int     // Create's fd, with its shared flock (see InUse); -1 if none
}

// SemPath returns the file that holds the semaphore with POSIX name name
// ("/NAME" or "NAME"), or an error if glibc would refuse the name.
func SemPath(name string) (string, error) {
	base := strings.TrimLeft(name, "/")
	switch {
	case base == "", base == ".", base == "..", strings.ContainsRune(base, '/'), strings.ContainsRune(base, 0):
		return "", fmt.Errorf("semaphore name %q: %w", name, unix.EINVAL)
	case len("sem.")+len(base) > unix.NAME_MAX:
		return "", fmt.Errorf("semaphore name %q: %w", name, unix.ENAMETOOLONG)
	}
	return ShmDir + "/sem." + base, nil
}

// posixName returns name in its canonical "/NAME" form.
func posixName(name string) string { return "/" + strings.TrimLeft(name, "/") }

// Create makes a new semaphore with the given initial value, mode 0600. It
// fails (with an error matching fs.ErrExist) if one of that name exists:
// ipcflow never reuses an object it did not make.
//
// As glibc's sem_open(O_CREAT|O_EXCL) does, the object is complete before
// its name appears: it is written to an unnamed file (O_TMPFILE) and then
// linked into place, so a concurrent sem_open never maps a half-written
// semaphore. Where O_TMPFILE or /proc is missing, a randomly named temporary
// file stands in, as in glibc.
func Create(name string, value uint32) (*Sem, error) {
	path, err := SemPath(name)
	if err != nil {
		return nil, err
	}
	if value > SemValueMax {
		return nil, fmt.Errorf("create semaphore %s: initial value %d above %d: %w", posixName(name), value, SemValueMax, unix.EINVAL)
	}
	var init [semSize]byte
	*(*uint64)(unsafe.Pointer(&init[0])) = uint64(value)
	*(*int32)(unsafe.Pointer(&init[semPrivateOffset])) = futexShared

	fd, tmp, err := writeUnnamed(init[:])
	if err != nil {
		return nil, fmt.Errorf("create semaphore %s: %w", posixName(name), err)
	}
	// The creator's lock (InUse) is taken before the name appears, so
	// there is no moment at which the named semaphore looks abandoned.
	if err := unix.Flock(fd, unix.LOCK_SH); err != nil {
		unix.Close(fd)
		if tmp != "" {
			unix.Unlink(tmp)
		}
		return nil, fmt.Errorf("create semaphore %s: lock: %w", posixName(name), err)
	}
	keep := false
	defer func() {
		if !keep {
			unix.Close(fd)
		}
	}()
	if tmp != "" {
		defer unix.Unlink(tmp)
		err = unix.Link(tmp, path)
	} else {
		err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW)
	}
	if err != nil {
		return nil, fmt.Errorf("create semaphore %s: %w", posixName(name), err)
	}
	s, err := mapSem(name, fd)
	if err != nil {
		unix.Unlink(path)
		return nil, fmt.Errorf("create semaphore %s: %w", posixName(name), err)
	}
	s.held, keep = fd, true
	return s, nil
}

// InUse reports whether the semaphore called name was made by Create in a
// process that still has it open: Create holds a shared flock on the file
// from before its name appears until Close, and the kernel drops it when
// that process dies however it dies. It is how `ipcflow clean` tells a
// live run's semaphore from one a crash left, without knowing where that
// run keeps its directory. A semaphore glibc's sem_open made holds no such
// lock and is never in use by this test.
func InUse(name string) bool {
	path, err := SemPath(name)
	if err != nil {
		return false
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd) // lets our own lock go, if we got it
	return unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == unix.EWOULDBLOCK
}

// noTmpfile makes Create take its fallback path, for the tests.
var noTmpfile = false

// writeUnnamed returns an fd of a file in ShmDir holding init, mode 0600,
// that has no name yet (tmp == "") or, as a fallback, a temporary name tmp
// that the caller removes.
func writeUnnamed(init []byte) (fd int, tmp string, err error) {
	fd, err = unix.Open(ShmDir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if noTmpfile {
		if err == nil {
			unix.Close(fd)
		}
		fd, err = -1, unix.EOPNOTSUPP
	}
	if err == nil {
		if _, serr := os.Stat("/proc/self/fd"); serr != nil {
			unix.Close(fd)
			fd, err = -1, unix.EOPNOTSUPP
		}
	}
	if err != nil {
		// Kernels or file systems without O_TMPFILE: glibc's way.
		for try := 0; ; try++ {
			tmp = fmt.Sprintf("%s/.ipcflow-sem-%d-%d", ShmDir, os.Getpid(), time.Now().UnixNano())
			fd, err = unix.Open(tmp, unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
			if err == nil {
				break
			}
			if err != unix.EEXIST || try == 50 {
				return -1, "", err
			}
		}
	}
	fail := func(err error) (int, string, error) {
		unix.Close(fd)
		if tmp != "" {
			unix.Unlink(tmp)
		}
		return -1, "", err
	}
	// The umask may have taken bits off; 0600 is the contract.
	if err := unix.Fchmod(fd, 0o600); err != nil {
		return fail(err)
	}
	if n, err := unix.Write(fd, init); err != nil || n != len(init) {
		if err == nil {
			err = unix.EIO
		}
		return fail(err)
	}
	return fd, tmp, nil
}

// Open opens an existing semaphore, made by ipcflow or by glibc's sem_open.
func Open(name string) (*Sem, error) {
	path, err := SemPath(name)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open semaphore %s: %w", posixName(name), err)
	}
	defer unix.Close(fd)
	// A shorter file would make the mapping fault (SIGBUS) on first use.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("open semaphore %s: %w", posixName(name), err)
	}
	if st.Size < semSize {
		return nil, fmt.Errorf("open semaphore %s: %s is %d bytes, not a semaphore", posixName(name), path, st.Size)
	}
	s, err := mapSem(name, fd)
	if err != nil {
		return nil, fmt.Errorf("open semaphore %s: %w", posixName(name), err)
	}
	return s, nil
}

func mapSem(name string, fd int) (*Sem, error) {
	mem, err := unix.Mmap(fd, 0, semSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map: %w", err)
	}
	return &Sem{
		name: posixName(name),
		mem:  mem,
		data: (*uint64)(unsafe.Pointer(&mem[0])),
		word: (*uint32)(unsafe.Pointer(&mem[0])), // little-endian: the value half
		held: -1,
	}, nil
}

// Unlink removes the semaphore's name; processes that have it open keep
// using it.
func Unlink(name string) error {
	path, err := SemPath(name)
	if err != nil {
		return err
	}
	if err := unix.Unlink(path); err != nil {
		return fmt.Errorf("unlink semaphore %s: %w", posixName(name), err)
	}
	return nil
}

// Name returns the semaphore's POSIX name, "/NAME": what a C program passes
// to sem_open.
func (s *Sem) Name() string { return s.name }

// Value returns the number of units available now (sem_getvalue).
// It is 0 after Close.
func (s *Sem) Value() int {
	if s.data == nil {
		return 0
	}
	return int(atomic.LoadUint64(s.data) & valueMask)
}

// waiters returns glibc's nwaiters: how many may be sleeping in Wait or
// sem_wait now. The tests check that giving up a wait deregisters.
func (s *Sem) waiters() uint32 { return uint32(atomic.LoadUint64(s.data) >> nwaitersShift) }

// TryWait takes a unit if one is available now and reports whether it did.
func (s *Sem) TryWait() (bool, error) {
	if s.mem == nil {
		return false, errClosed
	}
	return s.tryTake(), nil
}

func (s *Sem) tryTake() bool {
	for {
		d := atomic.LoadUint64(s.data)
		if d&valueMask == 0 {
			return false
		}
		if atomic.CompareAndSwapUint64(s.data, d, d-1) {
			return true
		}
	}
}

var errClosed = errors.New("semaphore is closed")

// Wait takes one unit, sleeping until one is posted. It returns ctx.Err()
// (context.Canceled or context.DeadlineExceeded) if ctx ends first, having
// taken nothing.
//
// While it sleeps it counts itself in nwaiters, so that a post from glibc
// (or from Go) wakes it. Cancellation wakes every sleeper on the word: the
// others (Go or glibc alike) find the value still 0 and sleep again, as they
// would after any spurious wake-up.
func (s *Sem) Wait(ctx context.Context) error {
	if s.mem == nil {
		return errClosed
	}
	if s.tryTake() {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	d := atomic.AddUint64(s.data, nwaiterUnit)
	if ctx.Done() != nil {
		word, woken := s.word, make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			FutexWake(word, math.MaxInt32)
			close(woken)
		})
		// If the wake has started, let it finish: after Wait returns the
		// caller may Close, and the wake must not touch an unmapped word.
		defer func() {
			if !stop() {
				<-woken
			}
		}()
	}
	deadline, hasDeadline := ctx.Deadline()
	for {
		if d&valueMask == 0 {
			if err := ctx.Err(); err != nil {
				s.unregister()
				return err
			}
			sleep := cancelPoll
			if ctx.Done() == nil {
				sleep = 0 // cannot be cancelled: sleep until posted
			}
			if hasDeadline {
				left := time.Until(deadline)
				if left <= 0 {
					s.unregister()
					return context.DeadlineExceeded
				}
				if sleep == 0 || left < sleep {
					sleep = left
				}
			}
			if err := FutexWait(s.word, 0, sleep); err != nil && err != unix.ETIMEDOUT && err != unix.EINTR {
				s.unregister()
				return fmt.Errorf("wait on semaphore %s: %w", s.name, err)
			}
			d = atomic.LoadUint64(s.data)
			continue
		}
		if atomic.CompareAndSwapUint64(s.data, d, d-1-nwaiterUnit) {
			return nil
		}
		d = atomic.LoadUint64(s.data)
	}
}

// unregister stops counting the caller as a waiter (adding -(1<<32)).
func (s *Sem) unregister() { atomic.AddUint64(s.data, ^(nwaiterUnit - 1)) }

// Post gives back one unit and wakes one sleeper if any may be sleeping.
func (s *Sem) Post() error {
	if s.mem == nil {
		return errClosed
	}
	for {
		d := atomic.LoadUint64(s.data)
		if d&valueMask >= SemValueMax {
			return fmt.Errorf("post semaphore %s: %w", s.name, unix.EOVERFLOW)
		}
		if atomic.CompareAndSwapUint64(s.data, d, d+1) {
			if d>>nwaitersShift > 0 {
				if _, err := FutexWake(s.word, 1); err != nil {
					return fmt.Errorf("wake waiter of semaphore %s: %w", s.name, err)
				}
			}
			return nil
		}
	}
}

// Close unmaps the semaphore (sem_close). The name stays until Unlink.
func (s *Sem) Close() error {
	if s.held >= 0 {
		unix.Close(s.held)
		s.held = -1
	}
	if s.mem == nil {
		return nil
	}
	mem := s.mem
	s.mem, s.data, s.word = nil, nil, nil
	if err := unix.Munmap(mem); err != nil {
		return fmt.Errorf("close semaphore %s: %w", s.name, err)
	}
	return nil
}
