package fdio

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/internal/testkit"
)

// moveShape makes a src and a dst of the named kinds for Move, feeding
// input into src and collecting dst, and returns a function that gives
// what arrived once Move is done.
type moveShape struct {
	name string
	make func(t *testing.T, input []byte) (dst, src *os.File, result func() []byte)
}

var moveShapes = []moveShape{
	{"pipe->pipe", func(t *testing.T, in []byte) (*os.File, *os.File, func() []byte) {
		d, res := testkit.PipeCollector(t)
		return d, testkit.PipeFeeder(t, in), res
	}},
	{"file->pipe", func(t *testing.T, in []byte) (*os.File, *os.File, func() []byte) {
		d, res := testkit.PipeCollector(t)
		return d, testkit.FileFeeder(t, in), res
	}},
	{"pipe->file", func(t *testing.T, in []byte) (*os.File, *os.File, func() []byte) {
		d, res := testkit.FileCollector(t)
		return d, testkit.PipeFeeder(t, in), res
	}},
	{"pipe->append-file", func(t *testing.T, in []byte) (*os.File, *os.File, func() []byte) {
		// splice(2) refuses O_APPEND files (EINVAL): Move must fall back.
		d, res := testkit.FileCollector(t)
		a, err := os.OpenFile(d.Name(), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		d.Close()
		return a, testkit.PipeFeeder(t, in), res
	}},
	{"file->file", func(t *testing.T, in []byte) (*os.File, *os.File, func() []byte) {
		d, res := testkit.FileCollector(t)
		return d, testkit.FileFeeder(t, in), res
	}},
	{"socket->pipe", func(t *testing.T, in []byte) (*os.File, *os.File, func() []byte) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		s, peer := os.NewFile(uintptr(fds[0]), "s0"), os.NewFile(uintptr(fds[1]), "s1")
		go func() { peer.Write(in); peer.Close() }()
		d, res := testkit.PipeCollector(t)
		return d, s, res
	}},
	{"pipe->socket", func(t *testing.T, in []byte) (*os.File, *os.File, func() []byte) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		s, peer := os.NewFile(uintptr(fds[0]), "s0"), os.NewFile(uintptr(fds[1]), "s1")
		got := testkit.ReadAll(peer)
		return s, testkit.PipeFeeder(t, in), func() []byte { return <-got }
	}},
	{"nonblocking pipe->pipe", func(t *testing.T, in []byte) (*os.File, *os.File, func() []byte) {
		// O_NONBLOCK on both sides: Move must wait in poll, not fail.
		src := testkit.PipeFeeder(t, in)
		d, res := testkit.PipeCollector(t)
		for _, f := range []*os.File{src, d} {
			fd, _ := FD(f)
			if err := unix.SetNonblock(fd, true); err != nil {
				t.Fatal(err)
			}
		}
		return d, src, res
	}},
}

func TestMoveCarriesBytesUnchanged(t *testing.T) {
	before := testkit.Warm(t)
	for _, shape := range moveShapes {
		for name, in := range testkit.Inputs() {
			t.Run(shape.name+"/"+name, func(t *testing.T) {
				dst, src, result := shape.make(t, in)
				n, err := Move(dst, src)
				if err != nil {
					t.Fatalf("Move: %v", err)
				}
				dst.Close()
				src.Close()
				got := result()
				if n != int64(len(in)) || !bytes.Equal(got, in) {
					t.Fatalf("moved %d bytes, got %d (sha %s), want %d (sha %s)", n, len(got), testkit.Sha(got), len(in), testkit.Sha(in))
				}
			})
		}
	}
	testkit.NoLeak(t, before)
}

// A real producer and consumer: seq -> Move -> cat, compared with bash.
func TestMoveBetweenProcesses(t *testing.T) {
	want := testkit.Bash(t, "seq 1 200000")
	r1, w1 := testkit.Pipe(t)
	r2, w2 := testkit.Pipe(t)
	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	prod := testkit.Start(t, "seq 1 200000", nil, w1)
	cons := testkit.Start(t, "cat", r2, out)
	if _, err := Move(w2, r1); err != nil {
		t.Fatal(err)
	}
	w2.Close()
	r1.Close()
	if err := prod.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := cons.Wait(); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out.Name())
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want %d", len(got), len(want))
	}
}

// 64 MiB through Move between processes, checked by hash against bash.
func TestMoveLargeByHash(t *testing.T) {
	const script = "head -c 67108864 /dev/urandom | tee %s"
	in := testkit.WriteTemp(t, "big", nil)
	want := testkit.Bash(t, fmt.Sprintf(script, in))
	r1, w1 := testkit.Pipe(t)
	r2, w2 := testkit.Pipe(t)
	prod := testkit.Start(t, "cat "+in, nil, w1)
	got := testkit.ReadAll(r2)
	n, err := Move(w2, r1)
	w2.Close()
	r1.Close()
	if err != nil {
		t.Fatal(err)
	}
	prod.Wait()
	b := <-got
	if n != 64<<20 || testkit.Sha(b) != testkit.Sha(want) {
		t.Fatalf("moved %d bytes, sha %s; want %d, sha %s", n, testkit.Sha(b), len(want), testkit.Sha(want))
	}
}

// A consumer that stops early (head) makes Move return ErrReaderGone, and
// closing the source then gives the producer SIGPIPE, as in a shell.
func TestMoveReaderGone(t *testing.T) {
	for _, shape := range []string{"pipe", "socket"} {
		t.Run(shape, func(t *testing.T) {
			r1, w1 := testkit.Pipe(t)
			prod := testkit.Start(t, "yes", nil, w1)
			var dst *os.File
			var cons interface{ Wait() error }
			var out func() []byte
			if shape == "pipe" {
				r2, w2 := testkit.Pipe(t)
				o, res := testkit.PipeCollector(t)
				cons = testkit.Start(t, "head -c 10", r2, o)
				dst, out = w2, res
			} else {
				// The consumer reads a socket: EPIPE comes from the
				// socket layer.
				fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				dst = os.NewFile(uintptr(fds[0]), "s0")
				peer := os.NewFile(uintptr(fds[1]), "s1")
				o, res := testkit.PipeCollector(t)
				cons = testkit.Start(t, "head -c 10", peer, o)
				out = res
			}
			_, err := Move(dst, r1)
			if !errors.Is(err, ErrReaderGone) || !errors.Is(err, syscall.EPIPE) {
				t.Fatalf("Move: %v, want ErrReaderGone and EPIPE", err)
			}
			dst.Close()
			r1.Close()
			if got := out(); string(got) != "y\ny\ny\ny\ny\n" {
				t.Errorf("head got %q", got)
			}
			cons.Wait()
			if sig := testkit.Signaled(prod.Wait()); sig != syscall.SIGPIPE {
				t.Errorf("producer ended by %v, want SIGPIPE", sig)
			}
		})
	}
}

// Move into a socket when the source is not a pipe either: the read/write
// path, with a Unix socket listener as the consumer.
func TestMoveFileToSocket(t *testing.T) {
	in := testkit.Inputs()["binary"]
	dir := t.TempDir()
	ln, err := net.Listen("unix", dir+"/s")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		var b bytes.Buffer
		b.ReadFrom(c)
		c.Close()
		got <- b.Bytes()
	}()
	c, err := net.Dial("unix", dir+"/s")
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := c.(*net.UnixConn).File()
	c.Close()
	src := testkit.FileFeeder(t, in)
	if _, err := Move(cf, src); err != nil {
		t.Fatal(err)
	}
	cf.Close()
	src.Close()
	if b := <-got; !bytes.Equal(b, in) {
		t.Fatalf("got %d bytes, want %d", len(b), len(in))
	}
}

// TestMoveWaitsOutsideSplice: a Move that waits for its socket (data to
// read, room to write) waits in poll(2), read(2) or write(2), never
// inside splice(2), which would hold its pipe's lock meanwhile (see
// Copy). Move runs on a thread of its own; the test looks at where that
// thread sleeps once nothing can move, for a blocking socket (moved with
// read and write) and a non-blocking one (spliced).
func TestMoveWaitsOutsideSplice(t *testing.T) {
	in := bytes.Repeat([]byte("0123456789abcdef"), 1<<12) // 64 KiB: what a pipe holds
	for _, way := range []string{"socket->pipe", "pipe->socket"} {
		for _, nonblock := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/nonblock=%v", way, nonblock), func(t *testing.T) {
				fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				sock, peer := os.NewFile(uintptr(fds[0]), "s0"), os.NewFile(uintptr(fds[1]), "s1")
				defer sock.Close()
				r, w := testkit.Pipe(t)
				defer r.Close()
				dst, src := w, sock
				var want []byte
				if way == "pipe->socket" {
					// The socket full (its peer reads nothing yet) and
					// the pipe holding data: Move waits for room.
					dst, src = sock, r
					want = fillSocket(t, fds[0])
					if _, err := w.Write(in); err != nil {
						t.Fatal(err)
					}
					w.Close()
				} // else nothing is written yet: Move waits for data.
				want = append(want, in...)
				if err := unix.SetNonblock(fds[0], nonblock); err != nil {
					t.Fatal(err)
				}
				tids, done := make(chan int, 1), make(chan error, 1)
				go func() {
					runtime.LockOSThread() // never unlocked: the thread ends with Move
					tids <- unix.Gettid()
					_, err := Move(dst, src)
					done <- err
				}()
				nr := sleepsIn(t, <-tids, unix.SYS_SPLICE, unix.SYS_PPOLL, unix.SYS_READ, unix.SYS_WRITE)
				if nr == unix.SYS_SPLICE {
					t.Errorf("Move waits inside splice(2), holding its pipe's lock")
				}
				var got <-chan []byte
				if way == "socket->pipe" {
					got = testkit.ReadAll(r)
					go func() { peer.Write(in); peer.Close() }()
				} else {
					got = testkit.ReadAll(peer)
				}
				if err := <-done; err != nil {
					t.Fatalf("Move: %v", err)
				}
				if way == "socket->pipe" {
					w.Close()
				} else {
					sock.Close()
				}
				if b := <-got; !bytes.Equal(b, want) {
					t.Errorf("got %d bytes, want %d unchanged", len(b), len(want))
				}
			})
		}
	}
}

// fillSocket writes into the socket fd until it takes no more, and
// returns what it wrote.
func fillSocket(t *testing.T, fd int) []byte {
	t.Helper()
	unix.SetNonblock(fd, true)
	var all []byte
	chunk := bytes.Repeat([]byte{'s'}, 4096)
	for {
		n, err := unix.Write(fd, chunk)
		if err == unix.EAGAIN {
			return all
		}
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, chunk[:n]...)
	}
}

// sleepsIn waits until thread tid of this process sleeps in one of the
// system calls nrs, and returns which. A call counts only when read while
// the thread slept on, no switch between two looks at its state: a
// thread passing through splice(2) on its way to poll(2) is not caught
// there.
func sleepsIn(t *testing.T, tid int, nrs ...int) int {
	dir := fmt.Sprintf("/proc/self/task/%d/", tid)
	sleep := func() string {
		b, err := os.ReadFile(dir + "status")
		if err != nil {
			t.Fatal(err)
		}
		var state, switches string
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "State:"); ok {
				state = strings.Fields(v)[0]
			}
			if v, ok := strings.CutPrefix(l, "voluntary_ctxt_switches:"); ok {
				switches = strings.TrimSpace(v)
			}
		}
		if state != "S" {
			return ""
		}
		return switches
	}
	for ; ; runtime.Gosched() {
		before := sleep()
		call, err := os.ReadFile(dir + "syscall")
		if err != nil {
			t.Fatal(err)
		}
		nr, err := strconv.Atoi(strings.Fields(string(call) + " x")[0])
		if before != "" && sleep() == before && err == nil && slices.Contains(nrs, nr) {
			return nr
		}
	}
}
