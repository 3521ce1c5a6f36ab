package channels

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Pipe makes a pipe whose ends are close-on-exec (a stage gets only the fds
// it is given), with a buffer of size bytes (0: the system default, 64 KiB).
// The kernel rounds size up to a power-of-two number of pages.
func Pipe(size int64) (r, w *os.File, err error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, fmt.Errorf("pipe: %w", err)
	}
	r = os.NewFile(uintptr(fds[0]), "|0")
	w = os.NewFile(uintptr(fds[1]), "|1")
	if size > 0 {
		if err := SetPipeSize(w, size); err != nil {
			r.Close()
			w.Close()
			return nil, nil, err
		}
	}
	return r, w, nil
}

// SetPipeSize sets the buffer of the pipe f belongs to (F_SETPIPE_SZ).
func SetPipeSize(f *os.File, size int64) error {
	if _, err := unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, int(size)); err != nil {
		if err == unix.EPERM {
			return fmt.Errorf("pipe size %d is above /proc/sys/fs/pipe-max-size (%d) or the user's pipe budget: %w", size, PipeMaxSize(), err)
		}
		return fmt.Errorf("set pipe size %d: %w", size, err)
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
