// Package fdio moves bytes between file descriptors: splice(2) where a
// side is a pipe, else read(2) and write(2) through one large reused
// buffer, waiting in poll(2) on non-blocking fds. A Stop lets another
// goroutine interrupt a copy and read how far it got. The bridges, the
// movers and the edge types all copy through here.
package fdio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// ErrReaderGone means the destination's reader closed its end (EPIPE): the
// normal end of a stream whose consumer stopped early, as `head` does. It is
// returned wrapped together with EPIPE, so errors.Is works for both.
var ErrReaderGone = errors.New("reader gone")

// ErrStopped is what a copy under a Stop returns once its owner asked it
// to stop: the owner's own doing, not a failure.
var ErrStopped = errors.New("stopped")

// Chunk is how much one splice(2) or read(2) asks for: large enough that a
// 1 MiB pipe drains in one call, so the syscall cost per byte stays small.
const Chunk = 1 << 20

// bufPool holds the read/write fallback's buffers, so a copy allocates
// nothing per chunk and a finished copy's buffer serves the next one.
var bufPool = sync.Pool{New: func() any { b := make([]byte, Chunk); return &b }}

// Buffer lends a Chunk-sized buffer from the pool the copies use; give it
// back with PutBuffer.
func Buffer() *[]byte { return bufPool.Get().(*[]byte) }

// PutBuffer gives back a buffer Buffer lent.
func PutBuffer(bp *[]byte) { bufPool.Put(bp) }

// Move copies src to dst until end of file on src and returns the number of
// bytes moved. When either side is a pipe it uses splice(2), so the bytes
// stay in the kernel; otherwise (or where the kernel refuses to splice: a
// tty, an O_APPEND file, a blocking socket: see Copy) it reads and writes
// through one large buffer. Both files may be non-blocking: Move then
// waits in poll(2) instead of failing with EAGAIN. If dst's reader has
// gone, Move returns ErrReaderGone. Move closes neither file.
func Move(dst, src *os.File) (int64, error) {
	d, err := FD(dst)
	if err != nil {
		return 0, err
	}
	s, err := FD(src)
	if err != nil {
		return 0, err
	}
	n, err := Copy(d, s, nil)
	// The fds were used as plain numbers; keep the Files (and so the fds)
	// alive until the copy is over.
	keepAlive(dst, src)
	return n, err
}

// Stop connects a copy loop to its owner (a mover, the mq bridge): the
// loop adds what it moves to the count as it goes, checks for a stop
// between chunks, and every wait is a poll(2) that also watches FD, an
// eventfd that the owner writes (Kick) to wake it.
type Stop struct {
	// FD is the eventfd a waiting loop watches; -1: none (or closed).
	FD    int
	stop  atomic.Bool
	bytes atomic.Int64
}

// Request asks the loop to stop; Kick then wakes it if it waits.
func (st *Stop) Request() { st.stop.Store(true) }

// Kick wakes the loop's poll(2) by writing the eventfd, if it is still
// open (the caller holds the lock under which the owner closes it).
func (st *Stop) Kick() {
	if st.FD >= 0 {
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		unix.Write(st.FD, one[:])
	}
}

// Add counts n moved bytes (nil: nobody counts).
func (st *Stop) Add(n int64) {
	if st != nil {
		st.bytes.Add(n)
	}
}

// Bytes is what the loop has counted so far.
func (st *Stop) Bytes() int64 { return st.bytes.Load() }

// Requested reports whether the owner asked to stop (never, for a nil Stop).
func (st *Stop) Requested() bool { return st != nil && st.stop.Load() }

// pollFD is the fd to watch for a stop, or -1.
func (st *Stop) pollFD() int {
	if st == nil {
		return -1
	}
	return st.FD
}

// Copy is Move on raw fds. With a Stop, every wait watches it too, so
// that its owner can interrupt the copy; it then returns ErrStopped.
//
// A copy never waits inside splice(2). A splice between a pipe and a
// socket that waits for the socket (data to read, room to write) holds
// the pipe's lock meanwhile, the lock of both its ends: whoever has the
// pipe's other end blocks in read(2) or write(2), even a non-blocking one,
// until the socket moves. A remote agent moving a socket edge into its
// session's pipe so froze sshd, that pipe's reader: no input reached the
// stage whose output the splice waited for, and the connection went
// silent until its heartbeat gave up. SPLICE_F_NONBLOCK covers the pipe's
// side only; a socket's side follows the socket's own O_NONBLOCK, which
// Copy can't set on a file description others may share. So a blocking
// socket is moved with read(2) and write(2), which wait with no pipe
// locked, and a non-blocking one is spliced, waiting in poll(2).
func Copy(dst, src int, stop *Stop) (int64, error) {
	var total int64
	if (isPipe(src) || isPipe(dst)) && !blockingSocket(src) && !blockingSocket(dst) {
		n, err := spliceLoop(dst, src, stop)
		total += n
		if err != ErrNoSplice {
			return total, err
		}
	}
	n, err := rwLoop(dst, src, stop)
	return total + n, err
}

// ErrNoSplice: the kernel can't splice between these two files (EINVAL), so
// the caller falls back to read/write. Nothing was lost: a failed splice
// moves no bytes.
var ErrNoSplice = errors.New("splice unsupported")

// spliceLoop splices with SPLICE_F_NONBLOCK and waits in poll(2) (see
// Copy: never inside splice).
func spliceLoop(dst, src int, stop *Stop) (int64, error) {
	// No SPLICE_F_MORE: into a TCP socket it corks, holding the last
	// bytes of an interactive stream back for up to 200 ms.
	const flags = unix.SPLICE_F_MOVE | unix.SPLICE_F_NONBLOCK
	var total int64
	for {
		if stop.Requested() {
			return total, ErrStopped
		}
		n, err := unix.Splice(src, nil, dst, nil, Chunk, flags)
		switch {
		case err == nil && n == 0:
			return total, nil
		case err == nil:
			total += n
			stop.Add(n)
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			if err := waitBoth(src, dst, stop); err != nil {
				return total, err
			}
		case err == unix.EPIPE || err == unix.ECONNRESET:
			return total, ReaderGone()
		case err == unix.EINVAL || err == unix.ENOSYS:
			return total, ErrNoSplice
		default:
			return total, fmt.Errorf("splice: %w", err)
		}
	}
}

func rwLoop(dst, src int, stop *Stop) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var total int64
	for {
		if stop != nil {
			// Wait here rather than in read(2): a blocking read can't be
			// interrupted by Close.
			if err := WaitFD(src, unix.POLLIN, stop); err != nil {
				return total, err
			}
		}
		n, err := unix.Read(src, buf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if err := WaitFD(src, unix.POLLIN, stop); err != nil {
				return total, err
			}
			continue
		case err == unix.EIO && KindOf(src) == KindChar:
			return total, nil // a terminal that hung up: end of input
		case err != nil:
			return total, fmt.Errorf("read: %w", err)
		case n == 0:
			return total, nil
		}
		w, err := writeAll(dst, buf[:n], stop)
		total += int64(w)
		stop.Add(int64(w))
		if err != nil {
			return total, err
		}
	}
}

// writeAll writes p to fd, waiting in poll(2) whenever fd is non-blocking
// and full.
func writeAll(fd int, p []byte, stop *Stop) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Write(fd, p[done:])
		switch {
		case err == nil:
			done += n
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			if err := WaitFD(fd, unix.POLLOUT, stop); err != nil {
				return done, err
			}
		case err == unix.EPIPE || err == unix.ECONNRESET:
			return done, ReaderGone()
		default:
			return done, fmt.Errorf("write: %w", err)
		}
	}
	return done, nil
}

// ReaderGone is the error of a write whose reader has gone: ErrReaderGone
// wrapped together with EPIPE.
func ReaderGone() error { return fmt.Errorf("%w: %w", ErrReaderGone, unix.EPIPE) }

// waitBoth waits until src is readable and dst writable (or either is at
// its end: a hang-up counts as ready, the next splice reports it). Polling
// for both at once would spin while one is ready and the other is not.
func waitBoth(src, dst int, stop *Stop) error {
	if err := WaitFD(src, unix.POLLIN, stop); err != nil {
		return err
	}
	return WaitFD(dst, unix.POLLOUT, stop)
}

// WaitFD polls fd for events, and the Stop (if any) for a request to
// stop.
func WaitFD(fd int, events int16, stop *Stop) error {
	sfd := stop.pollFD()
	all := [2]unix.PollFd{{Fd: int32(fd), Events: events}, {Fd: int32(sfd), Events: unix.POLLIN}}
	pfd := all[:]
	if sfd < 0 {
		pfd = all[:1]
	}
	for {
		if stop.Requested() {
			return ErrStopped
		}
		_, err := unix.Poll(pfd, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		if sfd >= 0 && pfd[1].Revents != 0 {
			return ErrStopped
		}
		if pfd[0].Revents&unix.POLLNVAL != 0 {
			return fmt.Errorf("poll: fd %d is not open", fd)
		}
		if pfd[0].Revents != 0 {
			return nil
		}
	}
}

// FD returns f's descriptor without f.Fd()'s side effect of switching a
// non-blocking file to blocking mode.
func FD(f *os.File) (int, error) {
	if f == nil {
		return -1, errors.New("nil file")
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("%s: %w", f.Name(), err)
	}
	fd := -1
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return -1, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return fd, nil
}

// keepAlive stops the garbage collector from closing files (through their
// finalizers) while their fd numbers are still in use.
func keepAlive(fs ...*os.File) {
	for _, f := range fs {
		runtime.KeepAlive(f)
	}
}

// Kind is what kind of file an fd is, for choosing how to move bytes.
type Kind int

const (
	KindOther Kind = iota
	KindPipe       // pipe or FIFO: splice and tee work on it
	KindRegular
	KindSocket
	KindChar // tty, /dev/null, ...
)

// KindOf is fd's kind (KindOther when fstat fails).
func KindOf(fd int) Kind {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return KindOther
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return KindPipe
	case unix.S_IFREG:
		return KindRegular
	case unix.S_IFSOCK:
		return KindSocket
	case unix.S_IFCHR:
		return KindChar
	}
	return KindOther
}

// IsGone tells a write that failed because the reader went away (EPIPE,
// or a reset socket) from a real failure.
func IsGone(err error) bool {
	return errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.ECONNREFUSED)
}

func isPipe(fd int) bool { return KindOf(fd) == KindPipe }

// blockingSocket reports whether fd is a socket without O_NONBLOCK.
func blockingSocket(fd int) bool {
	if KindOf(fd) != KindSocket {
		return false
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	return err == nil && fl&unix.O_NONBLOCK == 0
}
