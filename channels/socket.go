package channels

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// The socket edge type, three kinds (Options.Socket):
//
//   - unix (default): a socketpair. The producer gets one end, the
//     consumer the other; no byte passes through ipcflow.
//   - tcp: ipcflow listens (127.0.0.1, a free port, unless addr=), connects
//     to itself, accepts that one connection and hands both connected
//     sockets to the stages. A connected TCP socket is a plain fd that any
//     tool reads and writes, so again nothing passes through ipcflow and the
//     kernel gives EOF, backpressure and EPIPE as for a pipe. Any other
//     connection that reaches the listener first is accepted and closed
//     unread: the stranger's bytes never reach the consumer.
//   - udp: datagrams between two connected sockets, bridged (udp.go).
//
// unix and tcp reuse pipe.go's fdChannel; their Stats stay zero: ipcflow
// does not see their bytes.

func init() {
	register(Type{Name: "socket", Caps: Caps{}, Check: checkSocket, Open: openSocket})
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
		c, err = openUnix()
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

func openUnix() (Channel, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	// The consumer's end is read-only and the producer's write-only, as
	// with a pipe: a consumer that writes to its stdin gets an error.
	unix.Shutdown(fds[0], unix.SHUT_RD)
	unix.Shutdown(fds[1], unix.SHUT_WR)
	return &fdChannel{w: os.NewFile(uintptr(fds[0]), "socket-w"), r: os.NewFile(uintptr(fds[1]), "socket-r")}, nil
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
