package channels

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/bridge"
	"github.com/ipcflow/ipcflow/fdio"
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
	register(Type{Name: "socket", Caps: Caps{Bridged: true}, Check: checkSocket, Open: openSocket, NotPipes: socketNotPipes})
}

// socketNotPipes: unix hands the consumer its socket (the producer writes
// a pipe to the bridge), tcp hands both ends their sockets, udp bridges
// both sides through pipes.
func socketNotPipes(o Options) (writer, reader bool) {
	switch o.Socket {
	case "tcp":
		return true, true
	case "udp":
		return false, false
	}
	return false, true
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
	c := &unixChannel{sock: os.NewFile(uintptr(fds[0]), "socket-w"), br: bridge.Group{Edge: id}}
	w, in, err := bridge.Pipe(true)
	if err != nil {
		c.sock.Close()
		unix.Close(fds[1])
		return nil, err
	}
	c.in = in
	c.ends = newEnds(w, []*os.File{os.NewFile(uintptr(fds[1]), "socket-r")})
	c.br.Go(c.produce)
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
	br     bridge.Group
	in     *os.File // ipcflow's end of the producer's pipe
	sock   *os.File // ipcflow's end of the socketpair (non-blocking)
	bytes  atomic.Int64
	chunks atomic.Int64
	once   sync.Once
}

func (c *unixChannel) produce() error {
	defer c.in.Close()
	defer c.sock.Close() // end of stream for the consumer
	err := fdio.ErrNoSplice
	if unixSplice {
		err = c.splice()
	}
	if err == fdio.ErrNoSplice {
		err = c.copy()
	}
	if fdio.IsGone(err) {
		return nil
	}
	return err
}

// unixSplice is false only in tests, to run the read/write fallback.
var unixSplice = true

// splice moves the producer's pipe into the socket with splice(2): the
// bytes go from the pipe to the socket inside the kernel and never through
// ipcflow's memory, where read+write copies each one out and back in.
// It measured faster than read+write in BenchmarkTypes/socket/unix and
// between two cats (`ipcflow bench unix`), with no slower round trip
// (figures in docs/transports.md). Both fds are non-blocking and the
// waits are in Go's poller (a bridge blocked in poll(2) doubled the round
// trip through cat: its thread holds the scheduler slot), so Close
// interrupts them with a deadline. It returns fdio.ErrNoSplice, having moved
// nothing, where the kernel cannot splice into this socket.
func (c *unixChannel) splice() error {
	src, err := fdio.FD(c.in)
	if err != nil {
		return err
	}
	dst, err := fdio.FD(c.sock)
	if err != nil {
		return err
	}
	inRC, err := c.in.SyscallConn()
	if err != nil {
		return fmt.Errorf("pipe: %w", err)
	}
	sockRC, err := c.sock.SyscallConn()
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	var n int64
	var serr error
	// EAGAIN says the pipe is empty or the socket full; FIONREAD on the
	// pipe tells which. Each callback waits (returns false) only for its
	// own fd's side, after a failed splice seen since the poller's reset,
	// so no wake-up is missed. Made once: no allocation per chunk.
	move := func() {
		for {
			n, serr = unix.Splice(src, nil, dst, nil, fdio.Chunk, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			if serr != unix.EINTR {
				return
			}
		}
	}
	pipeEmpty := func() bool {
		k, err := unix.IoctlGetInt(src, unix.TIOCINQ) // FIONREAD: bytes in the pipe
		return err == nil && k == 0
	}
	whenData := func(uintptr) bool { move(); return serr != unix.EAGAIN || !pipeEmpty() }
	whenRoom := func(uintptr) bool { move(); return serr != unix.EAGAIN || pipeEmpty() }
	var moved int64
	for {
		if err := inRC.Read(whenData); err != nil {
			return fmt.Errorf("read from producer: %w", err)
		}
		if serr == unix.EAGAIN { // data waits in the pipe: the socket is full
			if err := sockRC.Write(whenRoom); err != nil {
				return fmt.Errorf("write to socket: %w", err)
			}
		}
		switch {
		case serr == unix.EAGAIN:
			continue
		case serr == unix.EINVAL && moved == 0:
			return fdio.ErrNoSplice
		case serr != nil:
			return fmt.Errorf("splice into socket: %w", serr)
		case n == 0:
			return nil // the producer closed its end and the pipe is empty
		}
		moved += n
		c.bytes.Add(n)
		c.chunks.Add(1)
	}
}

// copy is the fallback of splice: read(2) and write(2) through one large
// buffer, shared with copy.go's fallback (bufPool).
func (c *unixChannel) copy() error {
	bp := fdio.Buffer()
	defer fdio.PutBuffer(bp)
	buf := *bp
	for {
		n, rerr := c.in.Read(buf)
		if n > 0 {
			if _, err := c.sock.Write(buf[:n]); err != nil {
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

func (c *unixChannel) Wait() error { return c.br.Wait() }

func (c *unixChannel) Close() error {
	c.once.Do(func() {
		c.br.Closing()
		// A deadline, not Close, wakes the bridge: it splices between the
		// raw fd numbers, which must stay open until it has returned.
		past := time.Unix(1, 0)
		c.in.SetDeadline(past)
		c.sock.SetDeadline(past)
		c.br.Wait()
		c.in.Close()
		c.sock.Close()
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

// sockaddrString is host:port of an IP socket address, for messages.
func sockaddrString(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return net.JoinHostPort(net.IP(a.Addr[:]).String(), fmt.Sprint(a.Port))
	case *unix.SockaddrInet6:
		return net.JoinHostPort(net.IP(a.Addr[:]).String(), fmt.Sprint(a.Port))
	}
	return fmt.Sprint(sa)
}

// tcpAfterListen, when set (by tests), runs between listen and ipcflow's
// own connect, with the listening address: where a stranger gets in first.
var tcpAfterListen func(addr unix.Sockaddr)

const (
	// tcpBacklog is the listen queue. It can stay small: setup accepts
	// (and drops) strangers while it connects, so they never hold the
	// queue full for long.
	tcpBacklog = 16
	// tcpSetupTimeout bounds the whole setup: connect, and accept our own
	// connection among strangers.
	tcpSetupTimeout = 5 * time.Second
	// tcpRetry: on loopback a connection reaches the accept queue within
	// the connect call. If ours has not come by then, the kernel dropped
	// its SYN (or its ACK) because strangers filled the queue, and would
	// resend only after 1 s, 3 s, 7 s...; a fresh connect, once the loop
	// has made room, gets in at once.
	tcpRetry = 50 * time.Millisecond
)

func openTCP(addr string) (Channel, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	sa, err := resolveAddr("tcp", addr)
	if err != nil {
		return nil, err
	}
	// Non-blocking: setup accepts until EAGAIN, never waits in accept(2).
	ls, err := unix.Socket(family(sa), unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("tcp socket: %w", err)
	}
	defer unix.Close(ls) // strangers still queued get a reset
	unix.SetsockoptInt(ls, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(ls, sa); err != nil {
		return nil, fmt.Errorf("tcp listen on %s: %w", addr, err)
	}
	if err := unix.Listen(ls, tcpBacklog); err != nil {
		return nil, fmt.Errorf("tcp listen on %s: %w", addr, err)
	}
	lsa, err := unix.Getsockname(ls)
	if err != nil {
		return nil, fmt.Errorf("tcp listen on %s: %w", addr, err)
	}
	if tcpAfterListen != nil {
		tcpAfterListen(lsa)
	}
	cs, as, err := connectOwn(ls, lsa, tcpSetupTimeout)
	if err != nil {
		return nil, fmt.Errorf("tcp listening on %s: %w", sockaddrString(lsa), err)
	}
	// The stages expect blocking fds (accept4 gave as blocking already).
	if err := unix.SetNonblock(cs, false); err != nil {
		unix.Close(cs)
		unix.Close(as)
		return nil, fmt.Errorf("tcp socket: %w", err)
	}
	unix.SetsockoptInt(cs, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	unix.Shutdown(cs, unix.SHUT_RD)
	unix.Shutdown(as, unix.SHUT_WR)
	return &fdChannel{w: os.NewFile(uintptr(cs), "tcp-w"), r: os.NewFile(uintptr(as), "tcp-r")}, nil
}

// connectOwn connects a non-blocking socket to the listener ls (at lsa) and
// accepts until that connection comes; every other one (a stranger) is
// closed unread. Connecting and accepting share one poll loop: with a
// blocking connect first, strangers that had filled the accept queue made
// the kernel drop our SYN, nobody accepted, and the connect waited out its
// retries (135 s). It returns our end (non-blocking) and the accepted one.
func connectOwn(ls int, lsa unix.Sockaddr, timeout time.Duration) (cs, as int, err error) {
	deadline := time.Now().Add(timeout)
	cs, as = -1, -1
	defer func() {
		if err != nil {
			if cs >= 0 {
				unix.Close(cs)
			}
			if as >= 0 {
				unix.Close(as)
			}
		}
	}()
	var own unix.Sockaddr // cs's local address: the peer address to accept
	var started time.Time
	connected := false
	strangers, tries := 0, 0
	for {
		now := time.Now()
		if cs >= 0 && as >= 0 && connected {
			return cs, as, nil
		}
		if !now.Before(deadline) {
			return -1, -1, fmt.Errorf("own connection not accepted within %v (%d connects tried, %d other connections accepted and dropped: is something flooding the port?): %w",
				timeout, tries, strangers, unix.ETIMEDOUT)
		}
		if cs < 0 || (as < 0 && now.Sub(started) >= tcpRetry) {
			if cs >= 0 {
				unix.Close(cs) // if it gets in after all, it is a stranger
			}
			cs, own, err = startConnect(lsa)
			if err != nil {
				return -1, -1, err
			}
			started, connected = now, false
			tries++
		}
		pfd := []unix.PollFd{{Fd: int32(ls), Events: unix.POLLIN}, {Fd: int32(cs), Events: unix.POLLOUT}}
		if connected {
			pfd = pfd[:1]
		}
		wait := min(time.Until(deadline), tcpRetry-time.Since(started))
		if _, err := unix.Poll(pfd, max(int(wait/time.Millisecond), 0)+1); err != nil && err != unix.EINTR {
			return -1, -1, fmt.Errorf("tcp poll: %w", err)
		}
		if pfd[0].Revents != 0 {
			fd, n, err := acceptAll(ls, own, as < 0)
			if err != nil {
				return -1, -1, err
			}
			strangers += n
			if fd >= 0 {
				as = fd
			}
		}
		if !connected && len(pfd) > 1 && pfd[1].Revents != 0 {
			soerr, err := unix.GetsockoptInt(cs, unix.SOL_SOCKET, unix.SO_ERROR)
			switch {
			case err != nil:
				return -1, -1, fmt.Errorf("tcp connect to own listener: %w", err)
			case soerr == 0:
				connected = true
			case as >= 0:
				// Cannot be: the listener has it, yet it failed.
				return -1, -1, fmt.Errorf("tcp connect to own listener: %w", unix.Errno(soerr))
			default:
				// Refused or reset (the queue overflowed): try afresh.
				unix.Close(cs)
				cs = -1
			}
		}
	}
}

// startConnect starts a non-blocking connect to lsa and returns the socket
// with its local address (bound by connect, before it completes).
func startConnect(lsa unix.Sockaddr) (int, unix.Sockaddr, error) {
	cs, err := unix.Socket(family(lsa), unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return -1, nil, fmt.Errorf("tcp socket: %w", err)
	}
	if err := unix.Connect(cs, lsa); err != nil && err != unix.EINPROGRESS && err != unix.EINTR {
		unix.Close(cs)
		return -1, nil, fmt.Errorf("tcp connect to own listener: %w", err)
	}
	own, err := unix.Getsockname(cs)
	if err != nil {
		unix.Close(cs)
		return -1, nil, fmt.Errorf("tcp connect to own listener: %w", err)
	}
	return cs, own, nil
}

// acceptAll accepts every connection queued on the non-blocking listener
// ls. It keeps the one from own (if want) and closes the others unread.
func acceptAll(ls int, own unix.Sockaddr, want bool) (mine, strangers int, err error) {
	mine = -1
	for {
		fd, peer, err := unix.Accept4(ls, unix.SOCK_CLOEXEC)
		switch {
		case err == unix.EAGAIN:
			return mine, strangers, nil
		case err == unix.EINTR || err == unix.ECONNABORTED:
			continue
		case err != nil:
			if mine >= 0 {
				unix.Close(mine)
			}
			return -1, strangers, fmt.Errorf("tcp accept: %w", err)
		}
		if want && mine < 0 && sameAddr(peer, own) {
			mine = fd
			continue
		}
		unix.Close(fd) // a stranger: never read
		strangers++
	}
}
