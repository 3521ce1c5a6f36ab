package bench

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/mqueue"
	"github.com/ipcflow/ipcflow/ring"
)

// RoundTripSize is the message RoundTrip bounces.
const RoundTripSize = 64

// RoundTrip measures the mean round trip of a RoundTripSize-byte message
// over the kernel object behind an edge type, with ipcflow's own endpoints
// and no process or bridge in between: one OS thread sends, another echoes
// it back, each blocking the way the type's bridges block (the shm ring
// spins briefly, then sleeps on its futex; the others sleep in the kernel).
// kind is the socket kind for typ "socket". mmap has no round trip of its
// own (its readers follow a length inside ipcflow): ErrNoRoundTrip.
func RoundTrip(typ, kind string, rounds int) (time.Duration, error) {
	a, b, cleanup, err := roundTripLinks(typ, kind)
	if err != nil {
		return 0, err
	}
	defer cleanup()
	echoErr := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		buf := make([]byte, RoundTripSize)
		for range rounds + rounds/10 {
			if err := b.recv(buf); err != nil {
				echoErr <- err
				return
			}
			if err := b.send(buf); err != nil {
				echoErr <- err
				return
			}
		}
		echoErr <- nil
	}()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	msg := make([]byte, RoundTripSize)
	msg[RoundTripSize-1] = '\n'
	var start time.Time
	for i := range rounds + rounds/10 {
		if i == rounds/10 {
			start = time.Now() // the first tenth warms up
		}
		if err := a.send(msg); err != nil {
			return 0, fmt.Errorf("%s round trip: %w", typ, err)
		}
		if err := a.recv(msg); err != nil {
			return 0, fmt.Errorf("%s round trip: %w", typ, err)
		}
	}
	d := time.Since(start) / time.Duration(rounds)
	if err := <-echoErr; err != nil {
		return 0, fmt.Errorf("%s round trip echo: %w", typ, err)
	}
	return d, nil
}

// ErrNoRoundTrip: the type has no kernel object to bounce a message over.
var ErrNoRoundTrip = errors.New("no round trip of its own")

// rtEnd is one side of a round trip: send and receive one whole message.
type rtEnd struct {
	send, recv func([]byte) error
}

func fdEnd(w, r int) rtEnd {
	return rtEnd{
		send: func(b []byte) error { _, err := unix.Write(w, b); return err },
		recv: func(b []byte) error {
			for got := 0; got < len(b); {
				n, err := unix.Read(r, b[got:])
				if err != nil {
					return err
				}
				if n == 0 {
					return errors.New("unexpected end of file")
				}
				got += n
			}
			return nil
		},
	}
}

func closeAll(fds ...int) func() {
	return func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
}

func roundTripLinks(typ, kind string) (a, b rtEnd, cleanup func(), err error) {
	switch {
	case typ == "pipe" || typ == "fifo":
		var p1, p2 [2]int
		if err := unix.Pipe2(p1[:], unix.O_CLOEXEC); err != nil {
			return a, b, nil, err
		}
		if err := unix.Pipe2(p2[:], unix.O_CLOEXEC); err != nil {
			closeAll(p1[0], p1[1])()
			return a, b, nil, err
		}
		return fdEnd(p1[1], p2[0]), fdEnd(p2[1], p1[0]), closeAll(p1[0], p1[1], p2[0], p2[1]), nil
	case typ == "socket" && (kind == "" || kind == "unix"):
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return a, b, nil, err
		}
		return fdEnd(fds[0], fds[0]), fdEnd(fds[1], fds[1]), closeAll(fds[0], fds[1]), nil
	case typ == "socket" && (kind == "tcp" || kind == "udp"):
		x, y, err := loopbackPair(kind)
		if err != nil {
			return a, b, nil, err
		}
		return fdEnd(x, x), fdEnd(y, y), closeAll(x, y), nil
	case typ == "mq":
		return mqLinks()
	case typ == "shm":
		return shmLinks()
	}
	return a, b, nil, fmt.Errorf("%s: %w", typ, ErrNoRoundTrip)
}

// loopbackPair returns two connected blocking sockets on 127.0.0.1.
func loopbackPair(kind string) (int, int, error) {
	if kind == "tcp" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return -1, -1, err
		}
		defer l.Close()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			return -1, -1, err
		}
		defer c.Close()
		s, err := l.Accept()
		if err != nil {
			return -1, -1, err
		}
		defer s.Close()
		c.(*net.TCPConn).SetNoDelay(true)
		s.(*net.TCPConn).SetNoDelay(true)
		// File() gives blocking duplicates that outlive the net.Conns.
		cf, err := c.(*net.TCPConn).File()
		if err != nil {
			return -1, -1, err
		}
		sf, err := s.(*net.TCPConn).File()
		if err != nil {
			cf.Close()
			return -1, -1, err
		}
		x, _ := unix.Dup(int(cf.Fd()))
		y, _ := unix.Dup(int(sf.Fd()))
		cf.Close()
		sf.Close()
		return x, y, nil
	}
	lo := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	x, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, -1, err
	}
	y, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		unix.Close(x)
		return -1, -1, err
	}
	unix.Bind(x, lo)
	unix.Bind(y, lo)
	xa, _ := unix.Getsockname(x)
	ya, _ := unix.Getsockname(y)
	if err := errors.Join(unix.Connect(x, ya), unix.Connect(y, xa)); err != nil {
		unix.Close(x)
		unix.Close(y)
		return -1, -1, err
	}
	return x, y, nil
}

// mqLinks makes two small queues, blocking descriptors, names unlinked.
func mqLinks() (a, b rtEnd, cleanup func(), err error) {
	var fds []int
	cleanup = func() { closeAll(fds...)() }
	for i := range 2 {
		name := fmt.Sprintf("/ipcflow.rtt%d.%d", os.Getpid(), i)
		fd, err := mqueue.Open(name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, 2, 128)
		if err != nil {
			cleanup()
			return a, b, nil, fmt.Errorf("mq %s: %w", name, err)
		}
		mqueue.Unlink(name)
		fds = append(fds, fd)
	}
	end := func(w, r int) rtEnd {
		rbuf := make([]byte, 128)
		return rtEnd{
			send: func(m []byte) error { return mqueue.Send(w, m) },
			recv: func(m []byte) error {
				n, err := mqueue.Receive(r, rbuf)
				copy(m, rbuf[:n])
				return err
			},
		}
	}
	return end(fds[0], fds[1]), end(fds[1], fds[0]), cleanup, nil
}

// shmLinks makes two rings in anonymous shared memory, one each way.
func shmLinks() (a, b rtEnd, cleanup func(), err error) {
	var mems [][]byte
	var rings []*ring.Ring
	cleanup = func() {
		for _, m := range mems {
			unix.Munmap(m)
		}
	}
	for range 2 {
		mem, err := unix.Mmap(-1, 0, int(ring.Size(64<<10)), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
		if err != nil {
			cleanup()
			return a, b, nil, err
		}
		mems = append(mems, mem)
		r, err := ring.Init(mem, 64<<10, 1)
		if err != nil {
			cleanup()
			return a, b, nil, err
		}
		rings = append(rings, r)
	}
	end := func(w *ring.Writer, r *ring.Reader) rtEnd {
		return rtEnd{
			send: func(m []byte) error { _, err := w.Write(m); return err },
			recv: func(m []byte) error {
				for got := 0; got < len(m); {
					n, err := r.Read(m[got:])
					if err != nil {
						return err
					}
					got += n
				}
				return nil
			},
		}
	}
	return end(rings[0].Writer(), rings[1].Reader(0)), end(rings[1].Writer(), rings[0].Reader(0)), cleanup, nil
}
