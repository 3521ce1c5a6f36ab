package budget

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/fdio"
)

// Pipe makes a pipe whose ends are close-on-exec (a stage gets only the fds
// it is given), with a buffer of size bytes (0: the system default, 64 KiB).
// The kernel rounds size up to a power-of-two number of pages. A pipe that
// comes out smaller than asked (the user's pipes are over the budget of
// /proc/sys/fs/pipe-user-pages-soft, see budget.go) is an error wrapping
// ErrPipeBudget rather than a silently slow flow: size pipes with
// PlanPipeSize to stay inside the budget.
func Pipe(size int64) (r, w *os.File, err error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, fmt.Errorf("pipe: %w", err)
	}
	r = os.NewFile(uintptr(fds[0]), "|0")
	w = os.NewFile(uintptr(fds[1]), "|1")
	if err := SizePipe(w, size); err != nil {
		r.Close()
		w.Close()
		return nil, nil, err
	}
	return r, w, nil
}

// SizePipe gives a new pipe (or FIFO) its buffer and checks that it got at
// least what was asked (size 0: the default a new pipe should have).
func SizePipe(f *os.File, size int64) error {
	want := size
	if size > 0 {
		if err := SetPipeSize(f, size); err != nil {
			return err
		}
	} else {
		// A new pipe gets 16 pages, or pipe-max-size if that is smaller,
		// or 2 pages once the user is over the budget.
		want = min(defaultPipeBuf, PipeMaxSize())
	}
	got, err := PipeSize(f)
	if err != nil {
		return err
	}
	if got < want {
		return fmt.Errorf("pipe buffer came out at %s, not %s: %w", sizeString(got), sizeString(want), ErrPipeBudget)
	}
	return nil
}

// SetPipeSize sets the buffer of the pipe f belongs to (F_SETPIPE_SZ).
func SetPipeSize(f *os.File, size int64) error {
	if size <= 0 || size > 1<<31 {
		return fmt.Errorf("pipe size %d is out of range", size)
	}
	fd, err := fdio.FD(f)
	if err != nil {
		return err
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, int(size)); err != nil {
		if err == unix.EPERM {
			if max := PipeMaxSize(); roundPipeSize(size) > max {
				return fmt.Errorf("pipe size %s is above the system limit %s (/proc/sys/fs/pipe-max-size): %w", sizeString(size), sizeString(max), err)
			}
			return fmt.Errorf("pipe size %s: %w: %w", sizeString(size), ErrPipeBudget, err)
		}
		return fmt.Errorf("set pipe size %s: %w", sizeString(size), err)
	}
	return nil
}

// PipeMaxSize is /proc/sys/fs/pipe-max-size: the largest buffer an
// unprivileged process may ask for (1 MiB unless changed).
func PipeMaxSize() int64 {
	return readProcInt("/proc/sys/fs/pipe-max-size", 1<<20)
}

// readProcInt reads one integer from a /proc file, or returns def.
func readProcInt(path string, def int64) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return def
	}
	var n int64
	if _, err := fmt.Sscan(string(b), &n); err != nil {
		return def
	}
	return n
}

// CheckPipeSize refuses a pipe or FIFO buffer the kernel would refuse.
// Root could go above pipe-max-size, but a flow should not depend on who
// runs it.
func CheckPipeSize(size int64) error {
	if size < 0 {
		return fmt.Errorf("pipe size %d is negative", size)
	}
	if max := PipeMaxSize(); size > 0 && (size > 1<<31 || roundPipeSize(size) > max) {
		return fmt.Errorf("pipe size %s is above the system limit %s (/proc/sys/fs/pipe-max-size)", sizeString(size), sizeString(max))
	}
	return nil
}
