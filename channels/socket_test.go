package channels

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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
	if want := bash(t, producer, "cat"); !bytes.Equal(res.out, want) {
		t.Fatalf("got %s, want %s", short(res.out), short(want))
	}
	stranger.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := stranger.Read(make([]byte, 10)); err == nil || n != 0 {
		t.Fatalf("stranger's connection still open: read %d, %v", n, err)
	} else if err != io.EOF && !isGone(err) {
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
	if want := bash(t, "seq 1 100", "cat"); !bytes.Equal(res.out, want) {
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
