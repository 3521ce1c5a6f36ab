package movers

import (
	"bytes"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/internal/testkit"
)

// Join delivers srcs in order, whole, like cat, also when the later
// producers finish first and when a producer writes more than a pipe holds
// (it then blocks until its turn).
func TestJoinOrder(t *testing.T) {
	before := testkit.Warm(t)
	scripts := []string{
		"sleep 0.3; seq 1 3", // finishes last
		"sleep 0.1; head -c 300000 /dev/zero | tr '\\0' x; printf 'tail'", // more than a pipe holds, no newline
		"seq 10 12",         // finishes first
		"true",              // empty
		"printf 'a\\0b\\0'", // NULs
	}
	want := testkit.Bash(t, "cat <(sleep 0.3; seq 1 3) <(sleep 0.1; head -c 300000 /dev/zero | tr '\\0' x; printf 'tail') <(seq 10 12) <(true) <(printf 'a\\0b\\0')")
	var srcs []*os.File
	var procs []interface{ Wait() error }
	for _, s := range scripts {
		r, w := testkit.Pipe(t)
		procs = append(procs, testkit.Start(t, s, nil, w))
		srcs = append(srcs, r)
	}
	out, res := testkit.PipeCollector(t)
	m := StartJoin(srcs, out)
	if err := m.Wait(); err != nil {
		t.Fatal(err)
	}
	got := res()
	for _, p := range procs {
		if err := p.Wait(); err != nil {
			t.Errorf("producer: %v", err)
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes %q...; want %d bytes %q...", len(got), got[:min(len(got), 20)], len(want), want[:min(len(want), 20)])
	}
	if m.Bytes() != int64(len(want)) {
		t.Errorf("Bytes() = %d, want %d", m.Bytes(), len(want))
	}
	m.Close()
	testkit.NoLeak(t, before)
}

// When the joined stream's reader goes away, every producer still writing
// sees a closed pipe (SIGPIPE), and Join ends without error.
func TestJoinReaderGone(t *testing.T) {
	before := testkit.Warm(t)
	var srcs []*os.File
	var procs []interface{ Wait() error }
	for range 3 {
		r, w := testkit.Pipe(t)
		procs = append(procs, testkit.Start(t, "yes", nil, w))
		srcs = append(srcs, r)
	}
	r, w := testkit.Pipe(t)
	o, res := testkit.PipeCollector(t)
	head := testkit.Start(t, "head -c 5", r, o)
	m := StartJoin(srcs, w)
	if err := m.Wait(); err != nil {
		t.Fatalf("Join: %v, want nil when the reader goes", err)
	}
	if got := string(res()); got != "y\ny\ny" {
		t.Errorf("head got %q", got)
	}
	head.Wait()
	for i, p := range procs {
		if sig := testkit.Signaled(p.Wait()); sig != syscall.SIGPIPE {
			t.Errorf("producer %d ended by %v, want SIGPIPE", i, sig)
		}
	}
	testkit.NoLeak(t, before)
}

// Close stops a Join that is waiting for input and closes its fds.
func TestJoinClose(t *testing.T) {
	before := testkit.Warm(t)
	r1, w1 := testkit.Pipe(t) // a producer that never writes nor closes
	out, res := testkit.PipeCollector(t)
	m := StartJoin([]*os.File{r1}, out)
	m.Close()
	if err := m.Wait(); err != nil {
		t.Fatalf("Wait after Close: %v", err)
	}
	if got := res(); len(got) != 0 { // res returns: the write end was closed
		t.Errorf("got %q", got)
	}
	// The read end was closed by the Join: writing now fails.
	if _, err := w1.Write([]byte("x")); err == nil {
		t.Error("source still open after Close")
	}
	w1.Close()
	testkit.NoLeak(t, before)
}

// ipcflow's own stdout given as the destination is written but not closed.
func TestJoinKeepsStdio(t *testing.T) {
	r, w := testkit.Pipe(t)
	w.Close()
	m := StartJoin([]*os.File{r}, os.Stdout)
	if err := m.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.FcntlInt(1, unix.F_GETFD, 0); err != nil {
		t.Fatalf("fd 1 was closed: %v", err)
	}
}

// A terminal as the destination (ipcflow's stdout on a terminal): the
// bytes arrive, and the terminal's shared open file description is left
// blocking (the mover waits on a private reopen of its own), so the
// user's shell doesn't find its terminal non-blocking afterwards.
func TestJoinToTerminal(t *testing.T) {
	master, tty := testkit.Pty(t)
	defer master.Close()
	shared, err := unix.Dup(int(tty.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(shared)
	in := bytes.Repeat([]byte("line of text\n"), 20000) // more than the tty buffers
	r, w := testkit.Pipe(t)
	go func() { w.Write(in); w.Close() }()
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, len(in))
		n, _ := io.ReadFull(master, b)
		got <- b[:n]
	}()
	m := StartJoin([]*os.File{r}, tty)
	if err := m.Wait(); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, in) {
		t.Errorf("terminal got %d bytes, want %d", len(b), len(in))
	}
	if fl, _ := unix.FcntlInt(uintptr(shared), unix.F_GETFL, 0); fl&unix.O_NONBLOCK != 0 {
		t.Error("the terminal's shared description was left non-blocking")
	}
}

// Close stops a mover while bytes are flowing without a pause (a loop
// that never waits must still notice), for Join and Tee alike.
func TestMoverCloseWhileFlowing(t *testing.T) {
	before := testkit.Warm(t)
	for _, kind := range []string{"join", "tee"} {
		t.Run(kind, func(t *testing.T) {
			r, w := testkit.Pipe(t)
			prod := testkit.Start(t, "yes", nil, w)
			or, ow := testkit.Pipe(t)
			drained := make(chan struct{})
			go func() { io.Copy(io.Discard, or); or.Close(); close(drained) }()
			var m *Mover
			if kind == "join" {
				m = StartJoin([]*os.File{r}, ow)
			} else {
				m = StartTee(r, []*os.File{ow}, t.TempDir())
			}
			for m.Bytes() < 1<<20 {
				time.Sleep(time.Millisecond)
			}
			closed := make(chan struct{})
			go func() { m.Close(); close(closed) }()
			select {
			case <-closed:
			case <-time.After(20 * time.Second):
				t.Fatal("Close did not stop a flowing mover")
			}
			<-drained // the output was closed: the reader saw end of file
			if sig := testkit.Signaled(prod.Wait()); sig != syscall.SIGPIPE {
				t.Errorf("producer ended by %v, want SIGPIPE", sig)
			}
		})
	}
	testkit.NoLeak(t, before)
}

// A mover passes on what it has at once, without waiting for a chunk to
// fill or for end of file: interactive streams (a prompt, a log line) go
// through a fan-out or fan-in as they would through a pipe.
func TestMoversDoNotHoldBytes(t *testing.T) {
	before := testkit.Warm(t)
	for _, kind := range []string{"join", "tee"} {
		t.Run(kind, func(t *testing.T) {
			r, w := testkit.Pipe(t)
			or, ow := testkit.Pipe(t)
			var m *Mover
			if kind == "join" {
				m = StartJoin([]*os.File{r}, ow)
			} else {
				m = StartTee(r, []*os.File{ow}, t.TempDir())
			}
			for _, line := range []string{"first\n", "second, no newline"} {
				w.Write([]byte(line))
				got := make(chan string, 1)
				go func() {
					b := make([]byte, 100)
					n, _ := or.Read(b)
					got <- string(b[:n])
				}()
				select {
				case g := <-got:
					if g != line {
						t.Errorf("got %q, want %q", g, line)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("%q not passed on while the source stays open", line)
				}
			}
			w.Close()
			if err := m.Wait(); err != nil {
				t.Fatal(err)
			}
			or.Close()
		})
	}
	testkit.NoLeak(t, before)
}

// A join reading a blocking TCP socket whose writer is still open stops
// when closed. The socket's own code ignores SPLICE_F_NONBLOCK and, before
// the fix, the splice slept in the socket holding the pipe's lock: Close
// waited for good, and a run stuck there survived SIGTERM (issue 18).
func TestJoinClosesWhileSocketIdle(t *testing.T) {
	for _, kind := range []string{"tcp", "unix"} {
		t.Run(kind, func(t *testing.T) {
			before := testkit.Warm(t)
			r, w := socketPair(t, kind)
			out, res := testkit.PipeCollector(t)
			m := StartJoin([]*os.File{r}, out)
			time.Sleep(50 * time.Millisecond) // let the join block in the socket
			closed := make(chan struct{})
			go func() { m.Close(); close(closed) }()
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
				t.Fatal("Close of a join reading an idle socket did not return in 10 s")
			}
			if got := res(); len(got) != 0 {
				t.Errorf("got %q from an idle socket", got)
			}
			w.Close()
			testkit.NoLeak(t, before)
		})
	}
}

// socketPair returns two connected blocking stream sockets of kind ("tcp"
// over loopback, or "unix"), as a tcp or unix socket edge's ends.
func socketPair(t *testing.T, kind string) (r, w *os.File) {
	t.Helper()
	if kind == "unix" {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		return os.NewFile(uintptr(fds[0]), "sock-r"), os.NewFile(uintptr(fds[1]), "sock-w")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	rf, err := a.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	wf, err := c.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	c.Close()
	// File() dups the poller's non-blocking description: make it blocking,
	// as the stages get their ends.
	for _, f := range []*os.File{rf, wf} {
		if err := unix.SetNonblock(int(f.Fd()), false); err != nil {
			t.Fatal(err)
		}
	}
	return rf, wf
}
