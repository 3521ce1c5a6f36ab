package bench

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/bridge"
	"github.com/ipcflow/ipcflow/budget"
	"github.com/ipcflow/ipcflow/channels"
	"github.com/ipcflow/ipcflow/fdio"
	"github.com/ipcflow/ipcflow/mqueue"
	"github.com/ipcflow/ipcflow/ring"
)

// ObjectThroughput moves at least size bytes of 80-byte lines over the
// kernel object behind an edge type with ipcflow's own endpoints, no
// process and no bridge pipe in between: one OS thread writes, another
// reads, each blocking as the bridges block. It returns the bytes per
// second: the ceiling of what a bridge can get out of the object, beside
// `ipcflow bench`'s figure between two cats.
//
// mq writes with the bridge's packer (lines packed many to a message, up
// to msgsize) and reads with its unpacker; shm uses the ring's own writer
// and reader on a ring of the default capacity; pipe, fifo and unix and
// tcp sockets write and read 128 KiB at a time, as cat does. mmap's
// readers follow a length inside ipcflow, and udp drops what it cannot
// take: ErrNoObjectFigure.
func ObjectThroughput(typ, kind string, size int64) (float64, error) {
	var ends rateEnds
	var err error
	switch {
	case typ == "mq":
		ends, err = mqRateEnds(true)
	case typ == "shm":
		ends, err = shmRateEnds()
	case typ == "pipe" || typ == "fifo" || typ == "socket" && kind != "udp":
		ends, err = fdRateEnds(typ, kind)
	default:
		return 0, fmt.Errorf("%s: %w", typ, ErrNoObjectFigure)
	}
	if err != nil {
		return 0, fmt.Errorf("%s: %w", typ, err)
	}
	defer ends.cleanup()
	block := lineBlock()
	blocks := max(size/int64(len(block)), 1)
	d, err := ends.move(block, blocks)
	if err != nil {
		return 0, fmt.Errorf("%s throughput: %w", typ, err)
	}
	return float64(blocks*int64(len(block))) / d.Seconds(), nil
}

// ErrNoObjectFigure: the type has no kernel object of its own that a
// figure without processes would mean anything for.
var ErrNoObjectFigure = errors.New("no kernel object of its own to measure")

// rateBlock is what one write moves: whole 80-byte lines (the mq packer
// keeps a partial line back until its end comes), about 128 KiB.
const rateBlock = 80 * 1638

// lineBlock returns rateBlock bytes of 80-byte lines and one spare byte
// after them (the mq packer writes its trailer there and puts it back).
func lineBlock() []byte {
	b := make([]byte, rateBlock+1)
	for i := range rateBlock {
		b[i] = 'a' + byte(i%26)
		if i%80 == 79 {
			b[i] = '\n'
		}
	}
	return b[:rateBlock]
}

// rateEnds is the two ends of one object, blocking, for one thread each.
type rateEnds struct {
	write   func(p []byte) error        // all of p
	finish  func() error                // end of stream
	read    func(p []byte) (int, error) // io.EOF at the end
	readBuf int                         // the reader's buffer
	cleanup func()
}

// move writes block n times on this thread while another reads it all,
// and returns the time from the first write to the last byte read.
func (e rateEnds) move(block []byte, n int64) (time.Duration, error) {
	got := make(chan error, 1)
	var total int64
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		buf := make([]byte, e.readBuf)
		for {
			k, err := e.read(buf)
			total += int64(k)
			if err == io.EOF {
				got <- nil
				return
			}
			if err != nil {
				got <- err
				return
			}
		}
	}()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := time.Now()
	var werr error
	for range n {
		if werr = e.write(block); werr != nil {
			break
		}
	}
	werr = errors.Join(werr, e.finish())
	rerr := <-got
	d := time.Since(start)
	if err := errors.Join(werr, rerr); err != nil {
		return 0, err
	}
	if want := n * int64(len(block)); total != want {
		return 0, fmt.Errorf("read %d bytes, wrote %d", total, want)
	}
	return d, nil
}

// fdRateEnds: a pipe as pipe edges make them, a socketpair, or a loopback
// tcp connection; blocking descriptors.
func fdRateEnds(typ, kind string) (rateEnds, error) {
	var w, r int
	switch {
	case typ == "pipe" || typ == "fifo":
		rf, wf, err := budget.Pipe(0)
		if err != nil {
			return rateEnds{}, err
		}
		r, w = dupClose(rf), dupClose(wf)
	case kind == "" || kind == "unix":
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return rateEnds{}, err
		}
		w, r = fds[0], fds[1]
	default:
		var err error
		if w, r, err = loopbackPair(kind); err != nil {
			return rateEnds{}, err
		}
	}
	return rateEnds{
		write: func(p []byte) error {
			for len(p) > 0 {
				n, err := unix.Write(w, p)
				if err != nil && err != unix.EINTR {
					return err
				}
				p = p[max(n, 0):]
			}
			return nil
		},
		finish: func() error { return unix.Close(w) },
		read: func(p []byte) (int, error) {
			for {
				n, err := unix.Read(r, p)
				switch {
				case err == unix.EINTR:
					continue
				case err != nil:
					return 0, err
				case n == 0:
					return 0, io.EOF
				}
				return n, nil
			}
		},
		readBuf: 128 << 10,
		cleanup: func() { unix.Close(r) },
	}, nil
}

// dupClose returns a blocking duplicate of f's descriptor and closes f.
func dupClose(f *os.File) int {
	fd, _ := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	f.Close()
	return fd
}

// mqRateEnds: one queue of the largest messages allowed (8 KiB at most,
// as the edges use), non-blocking descriptors waiting in poll(2) as the
// bridge does. framed: the bridge's packer and unpacker; otherwise raw
// messages of msgsize bytes, the C reference's pattern.
func mqRateEnds(framed bool) (rateEnds, error) {
	l := budget.ReadMQLimits()
	msgsize := int(min(l.MsgsizeMax, 8192))
	name := fmt.Sprintf("/ipcflow.rate%d.%d", os.Getpid(), time.Now().UnixNano())
	send, err := mqueue.Open(name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NONBLOCK|unix.O_CLOEXEC, l.MsgMax, int64(msgsize))
	if err != nil {
		return rateEnds{}, fmt.Errorf("mq %s: %w", name, err)
	}
	recv, err := mqueue.Open(name, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0, 0)
	mqueue.Unlink(name)
	if err != nil {
		unix.Close(send)
		return rateEnds{}, fmt.Errorf("mq %s: %w", name, err)
	}
	sendAll := func(m []byte) error {
		for {
			switch err := mqueue.Send(send, m); err {
			case unix.EAGAIN:
				fdio.WaitFD(send, unix.POLLOUT, nil)
			case unix.EINTR:
			default:
				return err
			}
		}
	}
	e := rateEnds{
		finish:  func() error { return sendAll([]byte{bridge.MQEOF}) },
		readBuf: rateBlock + msgsize,
		cleanup: closeAll(send, recv),
	}
	if !framed {
		e.write = func(p []byte) error {
			for off := 0; off < len(p); off += msgsize {
				if err := sendAll(p[off:min(off+msgsize, len(p))]); err != nil {
					return err
				}
			}
			return nil
		}
	} else {
		var mid bool
		e.write = func(b []byte) error {
			for len(b) > 0 { // the spare byte after b: lineBlock
				n, err := bridge.PackMQ(send, msgsize, b, &mid)
				b = b[n:]
				if err == unix.EAGAIN {
					fdio.WaitFD(send, unix.POLLOUT, nil)
				} else if err != nil {
					return err
				}
			}
			return nil
		}
	}
	// Unframed messages count whole; the packer's carry a trailer byte
	// that bridge.UnpackMQ drops, and the end is a message of that byte alone.
	var eof bool
	e.read = func(buf []byte) (int, error) {
		for !eof {
			if !framed {
				n, err := mqueue.Receive(recv, buf)
				switch {
				case err == unix.EAGAIN:
					fdio.WaitFD(recv, unix.POLLIN, nil)
					continue
				case err == unix.EINTR:
					continue
				case err != nil:
					return 0, err
				case n == 1 && buf[0] == bridge.MQEOF:
					eof = true
					return 0, io.EOF
				}
				return n, nil
			}
			have, end, err := bridge.UnpackMQ(recv, msgsize, buf, 0)
			eof = end
			if have > 0 || end {
				return have, nil
			}
			if err == unix.EAGAIN {
				fdio.WaitFD(recv, unix.POLLIN, nil)
			} else if err != nil {
				return 0, err
			}
		}
		return 0, io.EOF
	}
	return e, nil
}

// shmRateEnds: a ring of channels.DefaultShmSize in anonymous shared memory, the
// ring's own writer and one reader (spin, then futex, as the edges do).
func shmRateEnds() (rateEnds, error) {
	mem, err := unix.Mmap(-1, 0, int(ring.Size(channels.DefaultShmSize)), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		return rateEnds{}, err
	}
	ring, err := ring.Init(mem, channels.DefaultShmSize, 1)
	if err != nil {
		unix.Munmap(mem)
		return rateEnds{}, err
	}
	w, r := ring.Writer(), ring.Reader(0)
	return rateEnds{
		write:   func(p []byte) error { _, err := w.Write(p); return err },
		finish:  w.Close,
		read:    r.Read,
		readBuf: 128 << 10,
		cleanup: func() { unix.Munmap(mem) },
	}, nil
}
