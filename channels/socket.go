package channels

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The socket edge type, three kinds (Options.Socket):
//
//   - unix (default): a socketpair. The consumer reads one end; a bridge
//     feeds the producer's pipe into the other (see unixChannel for why).
//   - tcp: ipcflow listens (127.0.0.1, a free port, unless addr=), connects
//     to itself, accepts that one connection and hands both connected
//     sockets to the stages. A connected TCP socket is a plain fd that any
//     tool reads and writes, so again nothing passes through ipcflow and the
//     kernel gives EOF, backpressure and EPIPE as for a pipe. Any other
//     connection that reaches the listener first is accepted and closed
//     unread: the stranger's bytes never reach the consumer.
//   - udp: datagrams between two connected sockets, bridged (udp.go).
//
// tcp reuses pipe.go's fdChannel; its Stats stay zero: ipcflow does not
// see its bytes. It needs no bridge for EPIPE: the producer's socket has
// received the consumer's FIN (the consumer's end is shut for writing), so
// it is in CLOSE_WAIT, where the kernel turns the consumer's reset into
// EPIPE and SIGPIPE (tcp_reset), as a pipe would.

func init() {
	// Bridged: unix and udp pass through ipcflow (tcp does not).
	register(Type{Name: "socket", Caps: Caps{Bridged: true}, Check: checkSocket, Open: openSocket})
}

func checkSocket(o Options) error {
	switch o.Socket {
	case "", "unix":
		if o.Addr != "" {
			return fmt.Errorf("socket unix takes no addr (%q)", o.Addr)
		}
		return nil
	case "tcp", "udp":
		if o.Addr == "" {
			return nil
		}
		_, err := resolveAddr(o.Socket, o.Addr)
		return err
	}
	return fmt.Errorf("socket kind %q: want unix, tcp or udp", o.Socket)
}

func openSocket(env Env, spec Spec) (Channel, error) {
	var c Channel
	var err error
	switch spec.Options.Socket {
	case "", "unix":
		c, err = openUnix(spec.ID)
	case "tcp":
		c, err = openTCP(spec.Options.Addr)
	case "udp":
		c, err = openUDP(spec.ID, spec.Options.Addr)
	}
	if err != nil {
		return nil, fmt.Errorf("edge %s: %w", spec.ID, err)
	}
	return c, nil
}

func openUnix(id string) (Channel, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	// The consumer's end reads, ipcflow's end writes, as with a pipe.
	unix.Shutdown(fds[0], unix.SHUT_RD)
	unix.Shutdown(fds[1], unix.SHUT_WR)
	unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
	unix.SetNonblock(fds[0], true)
	c := &unixChannel{sock: os.NewFile(uintptr(fds[0]), "socket-w"), br: bridges{edge: id}}
	w, in, err := bridgePipe(true)
	if err != nil {
		c.sock.Close()
		unix.Close(fds[1])
		return nil, err
	}
	c.in = in
	c.ends = newEnds(w, []*os.File{os.NewFile(uintptr(fds[1]), "socket-r")})
	c.br.goRun(c.produce)
	return c, nil
}

// unixChannel feeds the producer's pipe into the socketpair. The bridge is
// there for one reason: a unix socket closed with unread data makes its
// peer's next write fail with ECONNRESET, not EPIPE, so a producer writing
// the socket itself would fail (`yes: Connection reset by peer`, status 1)
// where over a pipe it dies quietly of SIGPIPE. The bridge sees the reset
// and closes the pipe, and the producer gets its EPIPE.
type unixChannel struct {
	ends
	br     bridges
	in     *os.File // ipcflow's end of the producer's pipe
	sock   *os.File // ipcflow's end of the socketpair (non-blocking)
	bytes  atomic.Int64
	chunks atomic.Int64
	once   sync.Once
}

func (c *unixChannel) produce() error {
	defer c.in.Close()
	defer c.sock.Close() // end of stream for the consumer
	buf := make([]byte, 1<<20)
	for {
		n, rerr := c.in.Read(buf)
		if n > 0 {
			if _, err := c.sock.Write(buf[:n]); err != nil {
				if isGone(err) {
					return nil
				}
				return fmt.Errorf("write to socket: %w", err)
			}
			c.bytes.Add(int64(n))
			c.chunks.Add(1)
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("read from producer: %w", rerr)
		}
	}
}

func (c *unixChannel) Wait() error { return c.br.wait() }

func (c *unixChannel) Close() error {
	c.once.Do(func() {
		c.br.closing.Store(true)
		c.in.Close()
		c.sock.Close()
		c.br.wg.Wait()
		c.closeUnhanded()
	})
	return nil
}

func (c *unixChannel) Stats() Stats {
	return Stats{Bytes: c.bytes.Load(), Records: c.chunks.Load()}
}

// resolveAddr parses host:port for kind ("tcp" or "udp") into a sockaddr.
func resolveAddr(kind, addr string) (unix.Sockaddr, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("socket %s addr %q: %w", kind, addr, err)
	}
	var p int
	if _, err := fmt.Sscan(port, &p); err != nil || p < 0 || p > 65535 {
		return nil, fmt.Errorf("socket %s addr %q: bad port", kind, addr)
	}
	if host == "" || host == "localhost" {
		host = "127.0.0.1"
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, fmt.Errorf("socket %s addr %q: want a numeric IP address", kind, addr)
	}
	if ip4 := ip.To4(); ip4 != nil {
		sa := &unix.SockaddrInet4{Port: p}
		copy(sa.Addr[:], ip4)
		return sa, nil
	}
	sa := &unix.SockaddrInet6{Port: p}
	copy(sa.Addr[:], ip)
	return sa, nil
}

func family(sa unix.Sockaddr) int {
	if _, ok := sa.(*unix.SockaddrInet6); ok {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

func sameAddr(a, b unix.Sockaddr) bool {
	switch a := a.(type) {
	case *unix.SockaddrInet4:
		b, ok := b.(*unix.SockaddrInet4)
		return ok && a.Port == b.Port && a.Addr == b.Addr
	case *unix.SockaddrInet6:
		b, ok := b.(*unix.SockaddrInet6)
		return ok && a.Port == b.Port && a.Addr == b.Addr
	}
	return false
}

// tcpAfterListen, when set (by tests), runs between listen and ipcflow's
// own connect, with the listening address: where a stranger gets in first.
var tcpAfterListen func(addr unix.Sockaddr)

// tcpAcceptTimeout bounds the wait for ipcflow's own connection.
const tcpAcceptTimeout = 5 * time.Second

func openTCP(addr string) (Channel, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	sa, err := resolveAddr("tcp", addr)
	if err != nil {
		return nil, err
	}
	ls, err := unix.Socket(family(sa), unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("tcp socket: %w", err)
	}
	defer unix.Close(ls)
	unix.SetsockoptInt(ls, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(ls, sa); err != nil {
		return nil, fmt.Errorf("tcp listen on %s: %w", addr, err)
	}
	if err := unix.Listen(ls, 16); err != nil {
		return nil, fmt.Errorf("tcp listen on %s: %w", addr, err)
	}
	lsa, err := unix.Getsockname(ls)
	if err != nil {
		return nil, fmt.Errorf("tcp listen on %s: %w", addr, err)
	}
	if tcpAfterListen != nil {
		tcpAfterListen(lsa)
	}
	cs, err := unix.Socket(family(sa), unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("tcp socket: %w", err)
	}
	// Loopback: connect completes at once, from the listen backlog.
	if err := unix.Connect(cs, lsa); err != nil {
		unix.Close(cs)
		return nil, fmt.Errorf("tcp connect to own listener: %w", err)
	}
	own, err := unix.Getsockname(cs)
	if err != nil {
		unix.Close(cs)
		return nil, fmt.Errorf("tcp connect to own listener: %w", err)
	}
	as, err := acceptOwn(ls, own)
	if err != nil {
		unix.Close(cs)
		return nil, err
	}
	unix.SetsockoptInt(cs, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	unix.Shutdown(cs, unix.SHUT_RD)
	unix.Shutdown(as, unix.SHUT_WR)
	return &fdChannel{w: os.NewFile(uintptr(cs), "tcp-w"), r: os.NewFile(uintptr(as), "tcp-r")}, nil
}

// acceptOwn accepts connections on ls until the one from own comes,
// closing every other (strangers) unread.
func acceptOwn(ls int, own unix.Sockaddr) (int, error) {
	deadline := time.Now().Add(tcpAcceptTimeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return -1, errors.New("tcp: own connection never reached the listener")
		}
		pfd := []unix.PollFd{{Fd: int32(ls), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, int(left/time.Millisecond)+1); err != nil && err != unix.EINTR {
			return -1, fmt.Errorf("tcp accept: %w", err)
		}
		if pfd[0].Revents&unix.POLLIN == 0 {
			continue
		}
		fd, peer, err := unix.Accept4(ls, unix.SOCK_CLOEXEC)
		if err != nil {
			if err == unix.EINTR || err == unix.ECONNABORTED {
				continue
			}
			return -1, fmt.Errorf("tcp accept: %w", err)
		}
		if sameAddr(peer, own) {
			return fd, nil
		}
		unix.Close(fd) // a stranger: never read
	}
}
