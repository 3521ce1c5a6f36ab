package channels

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/fdio"
	"github.com/ipcflow/ipcflow/internal/testkit"
)

// TestTCPStranger: a connection that reaches the edge's listener before
// ipcflow's own is dropped unread, and the stream still arrives whole.
func TestTCPStranger(t *testing.T) {
	var stranger net.Conn
	tcpAfterListen = func(sa unix.Sockaddr) {
		a := sa.(*unix.SockaddrInet4)
		c, err := net.Dial("tcp", fmt.Sprintf("%d.%d.%d.%d:%d", a.Addr[0], a.Addr[1], a.Addr[2], a.Addr[3], a.Port))
		if err != nil {
			t.Errorf("stranger dial: %v", err)
			return
		}
		c.Write([]byte("STRANGER WAS HERE\n"))
		stranger = c
	}
	defer func() { tcpAfterListen = nil }()
	producer := inputFile(t, []byte(strings.Repeat("our own line\n", 10000)))
	res := runChain(t, producer, []hop{{"socket", Options{Socket: "tcp"}}}, "cat")
	if stranger == nil {
		t.Fatal("the stranger never connected")
	}
	defer stranger.Close()
	if want := testkit.Bash(t, producer+" | cat"); !bytes.Equal(res.out, want) {
		t.Fatalf("got %s, want %s", short(res.out), short(want))
	}
	stranger.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := stranger.Read(make([]byte, 10)); err == nil || n != 0 {
		t.Fatalf("stranger's connection still open: read %d, %v", n, err)
	} else if err != io.EOF && !fdio.IsGone(err) {
		t.Fatalf("stranger's connection: %v, want closed", err)
	}
}

// TestSocketCheck: bad kinds and addresses fail before anything is made.
func TestSocketCheck(t *testing.T) {
	for _, o := range []Options{{Socket: "sctp"}, {Socket: "tcp", Addr: "nohost"}, {Socket: "udp", Addr: "example.com:80"}, {Socket: "unix", Addr: "1.2.3.4:5"}, {Socket: "tcp", Addr: "127.0.0.1:99999"}} {
		if err := checkSocket(o); err == nil {
			t.Errorf("checkSocket(%+v) accepted", o)
		}
	}
	for _, o := range []Options{{}, {Socket: "tcp"}, {Socket: "tcp", Addr: "127.0.0.1:0"}, {Socket: "udp", Addr: "[::1]:0"}} {
		if err := checkSocket(o); err != nil {
			t.Errorf("checkSocket(%+v): %v", o, err)
		}
	}
}

// TestTCPAddr: addr= is where the edge listens.
func TestTCPAddr(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var seen string
	tcpAfterListen = func(sa unix.Sockaddr) {
		a := sa.(*unix.SockaddrInet4)
		seen = fmt.Sprintf("%d.%d.%d.%d:%d", a.Addr[0], a.Addr[1], a.Addr[2], a.Addr[3], a.Port)
	}
	defer func() { tcpAfterListen = nil }()
	res := runChain(t, "seq 1 100", []hop{{"socket", Options{Socket: "tcp", Addr: addr}}}, "cat")
	if seen != addr {
		t.Fatalf("listened on %s, want %s", seen, addr)
	}
	if want := testkit.Bash(t, "seq 1 100 | cat"); !bytes.Equal(res.out, want) {
		t.Fatalf("got %s", short(res.out))
	}
}

// TestUDPLossCounted: a consumer far slower than the producer loses
// datagrams; the loss is counted and every line that arrives is whole.
func TestUDPLossCounted(t *testing.T) {
	var b bytes.Buffer
	for i := 0; b.Len() < 48<<20; i++ {
		fmt.Fprintf(&b, "line %d %s\n", i, strings.Repeat("z", i%200))
	}
	// The consumer starts reading only once the producer has written all:
	// 48 MiB against 8 MiB of socket buffer must overflow, however slow
	// the machine.
	flag := filepath.Join(t.TempDir(), "written")
	producer := inputFile(t, b.Bytes()) + " && touch " + flag
	consumer := "while [ ! -e " + flag + " ]; do sleep 0.05; done; cat"
	res := runChain(t, producer, []hop{{"socket", Options{Socket: "udp"}}}, consumer)
	st := res.stats[0]
	t.Logf("udp: sent %d datagrams, lost %d, delivered %d of %d bytes", st.Records, st.Lost, len(res.out), b.Len())
	if st.Lost == 0 {
		t.Fatalf("no loss counted with a consumer that waited until 48 MiB had gone by (delivered %d of %d bytes)", len(res.out), b.Len())
	}
	if len(res.out) >= b.Len() {
		t.Fatalf("loss counted (%d) but all %d bytes delivered", st.Lost, len(res.out))
	}
	checkUDP(t, res.out, b.Bytes(), st.Lost)
}

// TestTCPStrangerFlood: more strangers than the listen backlog connect to
// a tcp edge's fixed addr= port before ipcflow's own connect, and stay.
// With a full accept queue the kernel drops ipcflow's SYN; a blocking
// connect then waited out its retries (135 s) while nothing accepted.
// Setup must drain the strangers, get its own connection through, and
// carry the stream unmixed.
func TestTCPStrangerFlood(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var strangers []int
	defer func() {
		for _, fd := range strangers {
			unix.Close(fd)
		}
	}()
	connected := 0
	tcpAfterListen = func(sa unix.Sockaddr) {
		// Non-blocking connects: once the queue is full the rest wait in
		// SYN_SENT instead of blocking the test.
		for range 3 * tcpBacklog {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Errorf("stranger socket: %v", err)
				return
			}
			strangers = append(strangers, fd)
			if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
				t.Errorf("stranger connect: %v", err)
				return
			}
		}
		// Wait until the accept queue is full (backlog+1 connections
		// established), then write into every connection that has one.
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			connected = 0
			for _, fd := range strangers {
				if e, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); e == 0 {
					if _, err := unix.Getpeername(fd); err == nil {
						connected++
					}
				}
			}
			if connected > tcpBacklog {
				break
			}
		}
		for _, fd := range strangers {
			unix.Write(fd, []byte("STRANGER WAS HERE\n"))
		}
	}
	defer func() { tcpAfterListen = nil }()

	type opened struct {
		ch  Channel
		err error
	}
	start := time.Now()
	done := make(chan opened, 1)
	go func() {
		ch, err := Open(testEnv(t), Spec{ID: "e1", Type: "socket", Options: Options{Socket: "tcp", Addr: addr}, Readers: 1})
		done <- opened{ch, err}
	}()
	var o opened
	select {
	case o = <-done:
	case <-time.After(3 * tcpSetupTimeout):
		t.Fatalf("setup of a tcp edge with %d strangers queued still hangs after %v", connected, 3*tcpSetupTimeout)
	}
	if o.err != nil {
		t.Fatalf("open with %d strangers queued: %v", connected, o.err)
	}
	defer o.ch.Close()
	t.Logf("%d strangers connected first (backlog %d); setup took %v", connected, tcpBacklog, time.Since(start))
	if connected <= tcpBacklog {
		t.Fatalf("only %d strangers got in: the accept queue (backlog %d) was never full", connected, tcpBacklog)
	}
	input := bytes.Repeat([]byte("our own line\n"), 100000)
	if got := pump(t, o.ch, input); !bytes.Equal(got, input) {
		t.Fatalf("got %s, want %d bytes of our own lines", short(got), len(input))
	}
}

// TestTCPSetupTimeout: when ipcflow's own connection never reaches the
// listener it accepts on, setup gives up at its deadline with an error that
// says so, instead of hanging in connect(2).
func TestTCPSetupTimeout(t *testing.T) {
	listen := func() (int, unix.Sockaddr) {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
		if err := unix.Listen(fd, tcpBacklog); err != nil {
			t.Fatal(err)
		}
		sa, _ := unix.Getsockname(fd)
		return fd, sa
	}
	ls, _ := listen()
	defer unix.Close(ls)
	other, osa := listen() // our connects go here, where nobody accepts
	defer unix.Close(other)
	start := time.Now()
	_, _, err := connectOwn(ls, osa, 300*time.Millisecond)
	took := time.Since(start)
	if err == nil {
		t.Fatal("connectOwn succeeded without its connection")
	}
	if !errors.Is(err, unix.ETIMEDOUT) || !strings.Contains(err.Error(), "own connection not accepted within") {
		t.Fatalf("error %q: want one that names the timeout", err)
	}
	if took > 2*time.Second {
		t.Fatalf("gave up after %v, deadline was 300ms", took)
	}
	t.Logf("after %v: %v", took, err)
}

// readChars is this process's rchar (/proc/self/io): bytes that read(2)
// and its kin brought into user space. splice(2) does not count.
func readChars(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no /proc/self/io: %v", err)
	}
	var n int64
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "rchar: "); ok {
			fmt.Sscan(v, &n)
		}
	}
	return n
}

// unixThrough moves size bytes through a socket unix channel, both ends
// goroutines of the test, and returns how many bytes this process read(2)
// meanwhile.
func unixThrough(t *testing.T, size int) int64 {
	t.Helper()
	ch, err := Open(testEnv(t), Spec{ID: "e1", Type: "socket", Readers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	input := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	before := readChars(t)
	got := pump(t, ch, input)
	if err := ch.Wait(); err != nil {
		t.Fatal(err)
	}
	read := readChars(t) - before
	if !bytes.Equal(got, input) {
		t.Fatalf("got %s, want %d bytes", short(got), len(input))
	}
	if st := ch.Stats(); st.Bytes != int64(size) {
		t.Errorf("Stats.Bytes = %d, want %d", st.Bytes, size)
	}
	return read
}

// TestUnixBridgeSplices: the producer's bridge of a socket unix edge moves
// the stream pipe to socket with splice(2), so the only bytes read into
// this process are the consumer's (before, the bridge read each byte
// too: twice the stream); the read/write fallback still works.
func TestUnixBridgeSplices(t *testing.T) {
	const size = 32 << 20
	read := unixThrough(t, size)
	t.Logf("splice: %d bytes read into the process for %d moved", read, size)
	if read > size+size/2 {
		t.Errorf("%d bytes read into the process for %d moved: the bridge copies through user space", read, size)
	}
	unixSplice = false
	defer func() { unixSplice = true }()
	read = unixThrough(t, size)
	t.Logf("read/write fallback: %d bytes read into the process for %d moved", read, size)
	if read < 2*size {
		t.Errorf("fallback: %d bytes read for %d moved: did it run?", read, size)
	}
}
