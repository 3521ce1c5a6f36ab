package native

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The mq edge's control page: what a POSIX queue cannot carry. ipcflow
// creates it (a memfd, no name) and hands it to each native end as ctl=.
//
//	offset  size  field
//	     0     8  magic "ipcflowQ"
//	     8     4  version (Version)
//	    64     4  wdone: 1 once the writer has sent the end of stream
//	    68     4  wdead: 1 when the writer ended without it (set by ipcflow)
//	   128     4  rgone: 1 once the reader has stopped reading (set by the
//	              reader on Close, or by ipcflow when it ends)
//	   192     8  sent bytes: payload bytes the writer has sent (added by
//	              the writer after each send; ipcflow's --stats reads it
//	              when no bridge of its own sees the messages)
//	   200     8  sent messages (the end of stream not counted)
//
// A writer tests rgone before each message and after each bounded wait
// for room (mqWait); a reader tests wdead after each bounded wait for a
// message. So a peer that dies costs at most mqWait, never a hang.
const (
	ControlSize = 4096
	offCtlMagic = 0
	offCtlVer   = 8
	offCtlWdone = 64
	offCtlWdead = 68
	offCtlRgone = 128
	offCtlBytes = 192
	offCtlMsgs  = 200
)

// ctlMagic is "ipcflowQ" as little-endian bytes.
const ctlMagic = 0x51776f6c66637069

// Control is a mapped control page.
type Control struct{ mem []byte }

func (c *Control) u32(off int) *uint32 { return (*uint32)(unsafe.Pointer(&c.mem[off])) }
func (c *Control) u64(off int) *uint64 { return (*uint64)(unsafe.Pointer(&c.mem[off])) }

// NewControl makes a control page in a new memfd and returns it with the
// descriptor (close-on-exec: exec hands it to the stages it is for).
func NewControl() (*Control, int, error) {
	fd, err := unix.MemfdCreate("ipcflow-port-ctl", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, -1, fmt.Errorf("memfd for a port's control page: %w", err)
	}
	if err := unix.Ftruncate(fd, ControlSize); err != nil {
		unix.Close(fd)
		return nil, -1, fmt.Errorf("size a port's control page: %w", err)
	}
	mem, err := unix.Mmap(fd, 0, ControlSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, -1, fmt.Errorf("map a port's control page: %w", err)
	}
	c := &Control{mem: mem}
	*c.u32(offCtlVer) = Version
	atomic.StoreUint64(c.u64(offCtlMagic), ctlMagic)
	return c, fd, nil
}

// AttachControl maps the control page of descriptor fd and checks it.
func AttachControl(fd int) (*Control, error) {
	mem, err := unix.Mmap(fd, 0, ControlSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map the control page (fd %d): %w", fd, err)
	}
	c := &Control{mem: mem}
	if atomic.LoadUint64(c.u64(offCtlMagic)) != ctlMagic {
		unix.Munmap(mem)
		return nil, errors.New("the control page is not an ipcflow port's")
	}
	if v := *c.u32(offCtlVer); v != Version {
		unix.Munmap(mem)
		return nil, fmt.Errorf("control page version %d, this client speaks %d: build the stage against this ipcflow's client", v, Version)
	}
	return c, nil
}

// Close unmaps the page.
func (c *Control) Close() error {
	if c.mem == nil {
		return nil
	}
	err := unix.Munmap(c.mem)
	c.mem = nil
	return err
}

// SetWriterDone says the writer sent the end of stream.
func (c *Control) SetWriterDone() { atomic.StoreUint32(c.u32(offCtlWdone), 1) }

// WriterDone reports whether the writer sent the end of stream.
func (c *Control) WriterDone() bool { return atomic.LoadUint32(c.u32(offCtlWdone)) != 0 }

// MarkWriterDead says the writer ended without the end of stream; it does
// nothing once the writer finished.
func (c *Control) MarkWriterDead() {
	if !c.WriterDone() {
		atomic.StoreUint32(c.u32(offCtlWdead), 1)
	}
}

// WriterDied reports whether MarkWriterDead was called.
func (c *Control) WriterDied() bool { return atomic.LoadUint32(c.u32(offCtlWdead)) != 0 }

// MarkReaderGone says the reader stopped reading.
func (c *Control) MarkReaderGone() { atomic.StoreUint32(c.u32(offCtlRgone), 1) }

// ReaderGone reports whether the reader stopped reading.
func (c *Control) ReaderGone() bool { return atomic.LoadUint32(c.u32(offCtlRgone)) != 0 }

// AddSent counts one message of n payload bytes sent (the writer, after
// each send). A field on a line of its own: the reader never touches it.
func (c *Control) AddSent(n int) {
	atomic.AddUint64(c.u64(offCtlBytes), uint64(n))
	atomic.AddUint64(c.u64(offCtlMsgs), 1)
}

// Sent is what the writer has sent so far: payload bytes and messages.
func (c *Control) Sent() (bytes, msgs int64) {
	return int64(atomic.LoadUint64(c.u64(offCtlBytes))), int64(atomic.LoadUint64(c.u64(offCtlMsgs)))
}
