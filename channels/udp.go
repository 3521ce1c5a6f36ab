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

	"github.com/ipcflow/ipcflow/bridge"
	"github.com/ipcflow/ipcflow/fdio"
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
//	8  1  flags: udpContinues (the payload's last line goes on in the next
//	      datagram: a line longer than udpPayload), udpContinued (the
//	      payload's first bytes go on with a line begun in the previous
//	      datagram) and udpEOF (no payload: end of stream). Neither
//	      continue flag: the payload is whole lines (the last one may lack
//	      its newline at the end of the stream).
//
// The sender builds each header in place over bytes already sent (the
// buffer keeps 9 bytes of headroom before the first payload), so nothing is
// copied. Lines are never split across datagrams unless longer than
// udpPayload; a datagram that continues a line carries no newline, and the
// last piece of a long line may be followed by whole lines.
//
// Loss: the receiver expects consecutive sequence numbers, so a gap is a
// datagram lost. A line is written to the consumer only once its last piece
// has come, so a line that lost a piece is dropped whole: the consumer gets
// whole input lines only, never one glued from two lines' parts (before
// this, the pieces of a torn line went out as they came and ran into the
// next line). After a gap the receiver skips up to the first datagram that
// starts a line (no udpContinued), or to the end of the torn line inside
// one (its first newline). A line longer than udpLineMax is not held whole
// (memory): it goes out in pieces, and if one is lost the part already
// written is ended with a newline, so it stands alone as a cut line rather
// than run into the next one.
//
// End of stream: the EOF datagram, or, if that is lost, the producer
// bridge's word (both bridges are in ipcflow): the consumer stops once the
// producer is done and nothing has come for udpQuiet. A line still held
// then never got its end and is dropped.

const (
	udpHeader    = 9
	udpPayload   = 60 << 10 // below the 65507-byte limit of IPv4 datagrams
	udpContinues = 1 << 0
	udpEOF       = 1 << 1
	udpContinued = 1 << 2
	// udpLineMax is the longest line the receiver holds until its end to
	// drop it whole if a piece is lost; longer lines stream (see above).
	udpLineMax = 16 << 20
	udpQuiet   = 100 * time.Millisecond
	udpSockBuf = 8 << 20
)

// udpDropHook, when set (by tests), sees every datagram the sender is
// about to send, in order; returning true drops it, as an overflowing
// socket buffer would.
var udpDropHook func(seq uint64, payload []byte) bool

type udpChannel struct {
	ends
	br       bridge.Group
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
	drop     func(seq uint64, payload []byte) bool // udpDropHook when opened
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
		br:   bridge.Group{Edge: id},
		drop: udpDropHook,
	}
	w, in, err := bridge.Pipe(true)
	if err != nil {
		c.Close()
		return nil, err
	}
	r, out, err := bridge.Pipe(false)
	if err != nil {
		w.Close()
		in.Close()
		c.Close()
		return nil, err
	}
	c.in, c.out = in, out
	c.ends = newEnds(w, []*os.File{r})
	c.br.Go(c.produce)
	c.br.Go(c.consume)
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
	mid := false // the last datagram sent ended inside a line
	send := func(a, b int, flag byte) error {
		if mid {
			flag |= udpContinued
		}
		mid = flag&udpContinues != 0
		h := buf[a-udpHeader : a] // over bytes already sent, or the headroom
		binary.LittleEndian.PutUint64(h, seq)
		h[8] = flag
		var err error
		if c.drop == nil || !c.drop(seq, buf[a:b]) {
			_, err = c.send.Write(buf[a-udpHeader : b])
		}
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
				err = send(s0, s0+k+1, 0)
				s0 += k + 1
			case win == udpPayload:
				err = send(s0, s0+win, udpContinues)
				s0 += win
			case eof:
				err = send(s0, have, 0)
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

// consume writes the payloads of the datagrams to the consumer's pipe,
// whole lines only (see the top of the file for what a loss drops).
func (c *udpChannel) consume() error {
	defer c.out.Close()
	buf := make([]byte, 64<<10)
	var u udpUnpacker
	u.w = c.out
	gotData := false
	for {
		n, err := c.recv.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if c.done.Load() && !gotData {
				// The producer is done and nothing more came: the EOF
				// datagram was lost, and so was the end of any line held.
				return c.wrote(u.torn())
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
		seq, flags := binary.LittleEndian.Uint64(buf), buf[8]
		if seq < u.next {
			continue // late: its place was already given up as lost
		}
		if flags&udpEOF != 0 {
			return c.wrote(u.torn()) // a line still held lost its end
		}
		c.received.Add(1) // as sent: datagrams with data
		if err := c.wrote(u.datagram(seq, flags, buf[udpHeader:n])); err != nil || c.gone.Load() {
			return err
		}
	}
}

// wrote sorts the outcome of a write to the consumer's pipe: a reader that
// went away ends the bridge quietly (and the producer stops sending).
func (c *udpChannel) wrote(err error) error {
	if err == nil {
		return nil
	}
	if fdio.IsGone(err) {
		c.left.Store(true)
		c.gone.Store(true)
		return nil
	}
	return fmt.Errorf("write to reader: %w", err)
}

// udpUnpacker turns the datagrams that arrived into the consumer's bytes,
// dropping every line that lost a piece. Its one buffer (line) grows to the
// longest line held and is reused for every later line.
type udpUnpacker struct {
	w        io.Writer
	next     uint64 // the sequence number expected
	line     []byte // the pieces so far of a line longer than a datagram
	streamed bool   // line outgrew udpLineMax: its start is already written
	skip     bool   // a piece of the current line was lost: drop to its end
}

// datagram takes one datagram's payload.
func (u *udpUnpacker) datagram(seq uint64, flags byte, p []byte) error {
	if seq != u.next {
		// Datagrams u.next..seq-1 were lost, and with them the end of the
		// line held (if any) and maybe the start of the line p goes on with.
		if err := u.torn(); err != nil {
			return err
		}
		u.skip = true
	}
	u.next = seq + 1
	continues := flags&udpContinues != 0
	if flags&udpContinued == 0 {
		// p starts a line: whatever was lost is behind us. (A line still
		// held here lost its end, though no gap showed it.)
		if err := u.torn(); err != nil {
			return err
		}
		u.skip = false
	} else if u.skip {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			u.skip = continues // still inside the torn line, or at its end
			return nil
		}
		p, u.skip = p[i+1:], false // the rest of p is whole lines
	} else if i := bytes.IndexByte(p, '\n'); i >= 0 || !continues {
		// p ends the line held: without a newline, at the stream's end.
		end := len(p)
		if i >= 0 {
			end = i + 1
		}
		if err := u.hold(p[:end]); err != nil {
			return err
		}
		if err := u.flush(); err != nil {
			return err
		}
		p = p[end:]
	}
	// p starts on a line boundary here (or continues a held line with no
	// newline of its own).
	if !continues {
		return u.write(p)
	}
	k := bytes.LastIndexByte(p, '\n') + 1 // the last line is not finished
	if err := u.write(p[:k]); err != nil {
		return err
	}
	return u.hold(p[k:])
}

// hold keeps p as the next piece of the unfinished line. A line that grows
// past udpLineMax goes out as it comes instead.
func (u *udpUnpacker) hold(p []byte) error {
	if u.streamed {
		return u.write(p)
	}
	if len(u.line)+len(p) <= udpLineMax {
		u.line = append(u.line, p...)
		return nil
	}
	u.streamed = true
	err := u.write(u.line)
	u.line = u.line[:0]
	if err != nil {
		return err
	}
	return u.write(p)
}

// flush writes the line held, now whole.
func (u *udpUnpacker) flush() error {
	err := u.write(u.line)
	u.line, u.streamed = u.line[:0], false
	return err
}

// torn drops the line held: its end is lost. A line already partly
// written (longer than udpLineMax) gets a newline, so that it does not run
// into the next one.
func (u *udpUnpacker) torn() error {
	u.line = u.line[:0]
	if !u.streamed {
		return nil
	}
	u.streamed = false
	return u.write(newline)
}

// newline ends a cut line; a variable, so that writing it allocates nothing.
var newline = []byte{'\n'}

func (u *udpUnpacker) write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	_, err := u.w.Write(p)
	return err
}

func (c *udpChannel) Wait() error { return c.br.Wait() }

func (c *udpChannel) Close() error {
	c.once.Do(func() {
		c.br.Closing()
		c.gone.Store(true)
		c.send.Close()
		c.recv.Close()
		if c.in != nil {
			c.in.Close()
			c.out.Close()
		}
		c.br.Wait()
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
