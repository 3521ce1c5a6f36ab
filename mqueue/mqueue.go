// Package mqueue is POSIX message queues through raw system calls (no
// cgo, no librt): mq_open, mq_unlink, mq_getattr, mq_timedsend and
// mq_timedreceive, as glibc makes them of the Linux system calls. The mq
// edge's bridge, the queue budget, `ipcflow clean` and the benchmarks use
// it; it knows nothing of edges or framing.
package mqueue

import (
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Attr is struct mq_attr.
type Attr struct {
	Flags, Maxmsg, Msgsize, Curmsgs int64
	_                               [4]int64
}

// sysName turns "/name" into what the system call takes: glibc strips the
// slash before calling mq_open.
func sysName(name string) (*byte, error) {
	return unix.BytePtrFromString(strings.TrimPrefix(name, "/"))
}

// Open is mq_open(3). With O_CREAT the queue gets maxmsg and msgsize.
func Open(name string, flags int, maxmsg, msgsize int64) (int, error) {
	p, err := sysName(name)
	if err != nil {
		return -1, err
	}
	var attr *Attr
	if flags&unix.O_CREAT != 0 {
		attr = &Attr{Maxmsg: maxmsg, Msgsize: msgsize}
	}
	fd, _, e := unix.Syscall6(unix.SYS_MQ_OPEN, uintptr(unsafe.Pointer(p)), uintptr(flags|unix.O_CLOEXEC), 0o600, uintptr(unsafe.Pointer(attr)), 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(fd), nil
}

// Unlink is mq_unlink(3): it removes the queue called name ("/NAME").
func Unlink(name string) error {
	p, err := sysName(name)
	if err != nil {
		return err
	}
	if _, _, e := unix.Syscall(unix.SYS_MQ_UNLINK, uintptr(unsafe.Pointer(p)), 0, 0); e != 0 {
		return e
	}
	return nil
}

// Exists reports whether a queue called name exists, by opening it:
// /dev/mqueue, where queues could be listed, is often not mounted.
func Exists(name string) bool {
	fd, err := Open(name, unix.O_RDONLY, 0, 0)
	if err != nil {
		return err != unix.ENOENT
	}
	unix.Close(fd)
	return true
}

// GetAttr is mq_getattr(3), through mq_getsetattr.
func GetAttr(fd int) (Attr, error) {
	var a Attr
	if _, _, e := unix.Syscall(unix.SYS_MQ_GETSETATTR, uintptr(fd), 0, uintptr(unsafe.Pointer(&a))); e != 0 {
		return a, e
	}
	return a, nil
}

// Send is mq_timedsend(3) without a timeout: on a non-blocking queue it
// returns unix.EAGAIN when the queue is full, on a blocking one it waits.
func Send(fd int, msg []byte) error {
	_, _, e := unix.Syscall6(unix.SYS_MQ_TIMEDSEND, uintptr(fd), uintptr(unsafe.Pointer(&msg[0])), uintptr(len(msg)), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// Receive is mq_timedreceive(3) without a timeout (unix.EAGAIN on an
// empty non-blocking queue, a wait on a blocking one); buf must hold
// msgsize bytes.
func Receive(fd int, buf []byte) (int, error) {
	n, _, e := unix.Syscall6(unix.SYS_MQ_TIMEDRECEIVE, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// TimedSend is mq_timedsend(3) with an absolute CLOCK_REALTIME deadline
// (nil: none): on a blocking queue it waits for room until then, and
// returns unix.ETIMEDOUT if none came.
func TimedSend(fd int, msg []byte, deadline *unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_MQ_TIMEDSEND, uintptr(fd), uintptr(unsafe.Pointer(&msg[0])), uintptr(len(msg)), 0, uintptr(unsafe.Pointer(deadline)), 0)
	if e != 0 {
		return e
	}
	return nil
}

// TimedReceive is mq_timedreceive(3) with an absolute CLOCK_REALTIME
// deadline (nil: none); buf must hold msgsize bytes.
func TimedReceive(fd int, buf []byte, deadline *unix.Timespec) (int, error) {
	n, _, e := unix.Syscall6(unix.SYS_MQ_TIMEDRECEIVE, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, uintptr(unsafe.Pointer(deadline)), 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// TrySend is mq_timedsend(3) that never waits: unix.ETIMEDOUT (or
// EAGAIN on a non-blocking queue) when the queue is full. It is a raw
// system call, without the Go runtime's bookkeeping around one that may
// block: the fast path of a sender that blocks (TimedSend) only after it.
func TrySend(fd int, msg []byte) error {
	var past unix.Timespec
	_, _, e := unix.RawSyscall6(unix.SYS_MQ_TIMEDSEND, uintptr(fd), uintptr(unsafe.Pointer(&msg[0])), uintptr(len(msg)), 0, uintptr(unsafe.Pointer(&past)), 0)
	if e != 0 {
		return e
	}
	return nil
}

// TryReceive is TrySend's twin: unix.ETIMEDOUT when the queue is empty.
func TryReceive(fd int, buf []byte) (int, error) {
	var past unix.Timespec
	n, _, e := unix.RawSyscall6(unix.SYS_MQ_TIMEDRECEIVE, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, uintptr(unsafe.Pointer(&past)), 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
