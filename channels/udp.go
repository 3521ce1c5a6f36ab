package channels

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// socket udp: two connected datagram sockets (the receiver bound to
// 127.0.0.1:0 unless addr=, and connected back to the sender, so the kernel
// drops datagrams from anyone else). A bridge packs the producer's whole
// lines into datagrams, a second one unpacks them into the consumer's pipe.
// UDP has no backpressure: when the consumer falls behind, the receiver's
// socket buffer overflows and datagrams are lost, as SPEC allows; the
// sequence numbers count them (Stats.Lost).
//
// Datagram: a 9-byte header, then the payload:
//
//	0  8  sequence number, from 0, little-endian
//	8  1  udpEnds (payload ends on a line boundary, or is the stream's
//	      last bytes), udpContinues (a line longer than udpPayload goes on in
//	      the next datagram) or udpEOF (no payload: end of stream)
//
// The sender builds each header in place over bytes already sent (the
// buffer keeps 9 bytes of headroom before the first payload), so nothing is
// copied. A line longer than udpPayload is split, and a lost piece cuts it.
//
// End of stream: the EOF datagram, or, if that is lost, the producer
// bridge's word (both bridges are in ipcflow): the consumer stops once the
// producer is done and nothing has come for udpQuiet.

const (
	udpHeader    = 9
	udpPayload   = 60 << 10 // below the 65507-byte limit of IPv4 datagrams
	udpEnds      = 0
	udpContinues = 1
	udpEOF       = 2
	udpQuiet     = 100 * time.Millisecond
	udpSockBuf   = 8 << 20
)

type udpChannel struct {
	ends
	br       bridges
	send     *os.File // connected to recv
	recv     *os.File // connected to send
	in, out  *os.File // ipcflow's ends of the stages' pipes
	sent     atomic.Int64
	received atomic.Int64
	bytes    atomic.Int64
	done     atomic.Bool // the producer bridge has sent everything
	gone     atomic.Bool // the consumer has gone, or Close: stop sending
	left     atomic.Bool // the consumer stopped reading early
	once     sync.Once
}

func openUDP(id, addr string) (Channel, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	sa, err := resolveAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	rs, err := udpSocket(sa)
	if err != nil {
		return nil, fmt.Errorf("udp bind %s: %w", addr, err)
	}
	rsa, _ := unix.Getsockname(rs)
	var any unix.Sockaddr = &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	if family(sa) == unix.AF_INET6 {
		any = &unix.SockaddrInet6{Addr: [16]byte{15: 1}}
	}
	ss, err := udpSocket(any)
	if err != nil {
		unix.Close(rs)
		return nil, fmt.Errorf("udp sender: %w", err)
	}
	ssa, _ := unix.Getsockname(ss)
	if err := unix.Connect(ss, rsa); err != nil {
		unix.Close(rs)
		unix.Close(ss)
		return nil, fmt.Errorf("udp connect: %w", err)
	}
	if err := unix.Connect(rs, ssa); err != nil {
		unix.Close(rs)
		unix.Close(ss)
		return nil, fmt.Errorf("udp connect: %w", err)
	}
	c := &udpChannel{
		send: os.NewFile(uintptr(ss), "udp-send"),
		recv: os.NewFile(uintptr(rs), "udp-recv"),
		br:   bridges{edge: id},
	}
	w, in, err := bridgePipe(true)
	if err != nil {
		c.Close()
		return nil, err
	}
	r, out, err := bridgePipe(false)
	if err != nil {
		w.Close()
		in.Close()
		c.Close()
		return nil, err
	}
	c.in, c.out = in, out
	c.ends = newEnds(w, []*os.File{r})
	c.br.goRun(c.produce)
	c.br.goRun(c.consume)
	return c, nil
}

// udpSocket makes a non-blocking datagram socket bound to sa, with large
// buffers (forced above the sysctl maximum when privileged).
func udpSocket(sa unix.Sockaddr) (int, error) {
	fd, err := unix.Socket(family(sa), unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return -1, err
	}
	for _, opt := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt[0], udpSockBuf) != nil {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt[1], udpSockBuf)
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// produce packs the producer's lines into datagrams of up to udpPayload.
func (c *udpChannel) produce() error {
	defer c.in.Close()
	buf := make([]byte, udpHeader+(1<<20))
	have := udpHeader // payload bytes are buf[udpHeader:have]
	var seq uint64
	send := func(a, b int, flag byte) error {
		h := buf[a-udpHeader : a] // over bytes already sent, or the headroom
		binary.LittleEndian.PutUint64(h, seq)
		h[8] = flag
		_, err := c.send.Write(buf[a-udpHeader : b])
		seq++
		c.sent.Add(1)
		c.bytes.Add(int64(b - a))
		return err
	}
	defer func() {
		c.done.Store(true)
		if !c.gone.Load() {
			send(udpHeader, udpHeader, udpEOF)
			c.sent.Add(-1) // the EOF datagram carries no data
		}
		// Wake the consumer if it waits for the EOF datagram that was lost.
		c.recv.SetReadDeadline(time.Now().Add(udpQuiet))
	}()
	for {
		n, rerr := c.in.Read(buf[have:])
		have += n
		eof := rerr == io.EOF
		if rerr != nil && !eof {
			return fmt.Errorf("read from producer: %w", rerr)
		}
		s0 := udpHeader
		for s0 < have {
			win := min(have-s0, udpPayload)
			k := bytes.LastIndexByte(buf[s0:s0+win], '\n')
			var err error
			switch {
			case k >= 0:
				err = send(s0, s0+k+1, udpEnds)
				s0 += k + 1
			case win == udpPayload:
				err = send(s0, s0+win, udpContinues)
				s0 += win
			case eof:
				err = send(s0, have, udpEnds)
				s0 = have
			default:
				goto refill
			}
			if c.gone.Load() {
				return nil
			}
			if err != nil && !errors.Is(err, unix.ECONNREFUSED) && !errors.Is(err, unix.ENOBUFS) {
				return fmt.Errorf("udp send: %w", err)
			}
		}
	refill:
		have = udpHeader + copy(buf[udpHeader:], buf[s0:have])
		if eof {
			return nil
		}
	}
}

// consume writes the payloads of the datagrams to the consumer's pipe.
func (c *udpChannel) consume() error {
	defer c.out.Close()
	buf := make([]byte, 64<<10)
	gotData := false
	for {
		n, err := c.recv.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if c.done.Load() && !gotData {
				return nil // the producer is done and nothing more came
			}
			gotData = false
			c.recv.SetReadDeadline(time.Now().Add(udpQuiet))
			continue
		}
		if err != nil {
			return fmt.Errorf("udp receive: %w", err)
		}
		if n < udpHeader {
			continue
		}
		gotData = true
		if buf[8] == udpEOF {
			return nil
		}
		c.received.Add(1)
		if n == udpHeader {
			continue
		}
		if _, err := c.out.Write(buf[udpHeader:n]); err != nil {
			if isGone(err) {
				c.left.Store(true)
				c.gone.Store(true)
				return nil
			}
			return fmt.Errorf("write to reader: %w", err)
		}
	}
}

func (c *udpChannel) Wait() error { return c.br.wait() }

func (c *udpChannel) Close() error {
	c.once.Do(func() {
		c.br.closing.Store(true)
		c.gone.Store(true)
		c.send.Close()
		c.recv.Close()
		if c.in != nil {
			c.in.Close()
			c.out.Close()
		}
		c.br.wg.Wait()
		c.closeUnhanded()
	})
	return nil
}

func (c *udpChannel) Stats() Stats {
	st := Stats{Bytes: c.bytes.Load(), Records: c.sent.Load()}
	// Datagrams sent after the consumer left were not lost, only unread.
	if c.done.Load() && !c.left.Load() {
		st.Lost = st.Records - c.received.Load()
	}
	return st
}
