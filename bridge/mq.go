package bridge

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/fdio"
	"github.com/ipcflow/ipcflow/mqueue"
	"github.com/ipcflow/ipcflow/native"
)

// The mq edge's bridge: one goroutine takes the producers' pipes, packs
// their lines into messages, sends them to the queue, receives them back
// and writes the payloads into the consumer's pipe.
//
// Message format: the payload, then one trailer byte:
//
//	mqEnds       the payload ends on a line boundary (or is the stream's
//	             last bytes, which need not end in a newline)
//	mqContinues  the payload's last line goes on in the next message of the
//	             same producer: a line longer than msgsize-1 spans messages
//	MQEOF        (the message is this byte alone) end of stream
//
// A trailer rather than a header lets both ends work in place: the
// sender writes the flag over the byte after the payload (and puts it back
// after the send), the receiver takes each message at the end of the
// previous payload, so a batch of messages lands as one contiguous run of
// stream bytes, written to the consumer with one write(2).
//
// Several producers may share a queue (AddWriter): each sends only whole
// lines, and once a producer has sent the first piece of a long line, the
// others wait until its last piece is sent, so lines never interleave
// mid-line. When every producer has finished, the bridge sends MQEOF.
//
//	producer ─pipe─▶ ┐                        ┌─▶ (receive) ─▶ out buffer ─pipe─▶ consumer
//	producer ─pipe─▶ ┴▶ buffer ─(pack, send)─▶ queue
//
// Both ends of the queue are in ipcflow, so one loop serves both, each pass
// doing what can be done without waiting: write what the consumer's pipe
// takes, receive what the out buffer has room for, read what the
// producers' pipes hold, send what the queue takes. It waits (poll(2), on
// the pipes and an eventfd for Close) only after a pass that moved
// nothing. Two goroutines handing each other a full or empty queue woke
// each other through Go's poller for every few messages: on two CPUs with
// the two cats besides, that cost more than the copies (256 MiB between
// two cats: 440-650 ms against 190-220 for a pipe edge, with the CPUs kept
// awake; see docs/transports.md).
//
// Backpressure is the chain of full buffers: a consumer that does not read
// fills its pipe, then the out buffer, then the queue (the loop stops
// receiving, then sending), then the producers' buffers and pipes.

// The trailer byte of a message: package native's, for a native stage
// at either end frames as the bridge does.
const (
	mqEnds      = native.MQEnds
	mqContinues = native.MQContinues
	// MQEOF, a message of this byte alone, ends the stream.
	MQEOF = native.MQEOF
)

// MQNative says which end of a queue a native stage holds (package
// native): the bridge then runs only the other side. With Writer, the
// queue is fed from outside: the bridge only receives, until MQEOF or
// until WriterGone says the writer ended (then it drains what is there).
// With Reader, the queue is emptied from outside: the bridge only
// sends, until the end of stream or until the control page (Ctl) says
// the reader has gone.
type MQNative struct {
	Writer, Reader bool
	Ctl            *native.Control
}

// mqProducer is one producer's pipe and the bytes read from it not yet sent.
type mqProducer struct {
	fd          int    // ipcflow's end of the pipe; -1 once at its end or closed
	buf         []byte // payload is buf[start:have]; the last byte is room for a trailer
	start, have int
}

// MQ is a running mq bridge: the producers' pipes in, the queue, the
// consumer's pipe out.
type MQ struct {
	edge, name string
	msgsize    int
	send, recv int       // the queue's descriptors, non-blocking
	ctl        fdio.Stop // ctl.FD: an eventfd that Close and AddWriter write

	mu    sync.Mutex
	added []*mqProducer // from AddWriter, for the loop to take
	ended bool          // the loop is past taking producers

	// The loop's own.
	prods             []*mqProducer
	cur               int // the producer whose long line is half sent; -1: none
	next              int // where the next pass starts among prods (fairness)
	out               int // ipcflow's end of the consumer's pipe
	outBuf            []byte
	outStart, outHave int
	sentEOF, gotEOF   bool
	gone              bool // the consumer went away
	nat               MQNative
	full              bool        // the last feed found the queue full
	writerGone        atomic.Bool // WriterGone: the native writer ended
	died              bool        // it ended without MQEOF

	done      chan struct{}
	err       error
	bytes     atomic.Int64
	msgs      atomic.Int64
	closeOnce sync.Once
}

// mqBufSize is each of the bridge's buffers: a producer's and the
// consumer's. As large as the pipes beside them, and small enough to stay
// in the CPU's cache between the copy in and the copy out.
const mqBufSize = 256 << 10

// StartMQ starts the bridge of a queue whose descriptors send and recv it
// takes over (closing them on error too). w is the first producer's end
// of its pipe, r the consumer's end: the stages' fds.
func StartMQ(edge, name string, send, recv, msgsize int) (*MQ, *os.File, *os.File, error) {
	return StartMQNative(edge, name, send, recv, msgsize, MQNative{})
}

// StartMQNative is StartMQ for a queue with an end held by a native
// stage: that end's file (w or r) is nil, and the bridge runs the other
// side only.
func StartMQNative(edge, name string, send, recv, msgsize int, nat MQNative) (*MQ, *os.File, *os.File, error) {
	c := &MQ{edge: edge, name: name, msgsize: msgsize, send: send, recv: recv, cur: -1, out: -1, ctl: fdio.Stop{FD: -1}, done: make(chan struct{}), nat: nat}
	fail := func(err error) (*MQ, *os.File, *os.File, error) {
		for _, p := range c.added {
			unix.Close(p.fd)
		}
		if c.out >= 0 {
			unix.Close(c.out)
		}
		if c.ctl.FD >= 0 {
			unix.Close(c.ctl.FD)
		}
		unix.Close(send)
		unix.Close(recv)
		return nil, nil, nil, err
	}
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fail(fmt.Errorf("eventfd: %w", err))
	}
	c.ctl.FD = fd
	var r, w *os.File
	if !nat.Reader {
		var out int
		if r, out, err = RawPipe(false); err != nil {
			return fail(err)
		}
		c.out = out
		c.outBuf = make([]byte, max(mqBufSize, 4*msgsize))
	} else {
		c.gotEOF = true // nothing to receive here
	}
	if !nat.Writer {
		if w, err = c.newProducer(); err != nil {
			if r != nil {
				r.Close()
			}
			return fail(err)
		}
	} else {
		c.ended, c.sentEOF = true, true // nothing to send here
	}
	go c.run()
	return c, w, r, nil
}

// WriterGone says the native writer's process ended: the bridge drains
// what the queue holds and ends there (with an error, if the writer did
// not send MQEOF).
func (c *MQ) WriterGone() {
	c.writerGone.Store(true)
	c.mu.Lock()
	c.ctl.Kick()
	c.mu.Unlock()
}

// ReaderGone says the native reader's process ended (or it closed its
// end): the producers' next writes get EPIPE.
func (c *MQ) ReaderGone() {
	c.mu.Lock()
	c.ctl.Kick()
	c.mu.Unlock()
}

// newProducer makes a producer's pipe and queues it for the loop.
func (c *MQ) newProducer() (*os.File, error) {
	w, fd, err := RawPipe(true)
	if err != nil {
		return nil, err
	}
	c.added = append(c.added, &mqProducer{fd: fd, buf: make([]byte, max(mqBufSize, 4*c.msgsize)+1)})
	return w, nil
}

// AddWriter gives the queue another producer: a new pipe whose lines go
// into the same queue, never interleaved mid-line with the others'. Call it
// before the stages start; end of stream follows the last producer's.
func (c *MQ) AddWriter() (*os.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return nil, fmt.Errorf("edge %s: add a producer to a finished queue", c.edge)
	}
	w, err := c.newProducer()
	if err != nil {
		return nil, fmt.Errorf("edge %s: %w", c.edge, err)
	}
	c.ctl.Kick()
	return w, nil
}

func (c *MQ) run() {
	err := c.loop()
	c.mu.Lock()
	c.ended = true
	for _, p := range c.added {
		unix.Close(p.fd)
	}
	c.added = nil
	unix.Close(c.ctl.FD)
	c.ctl.FD = -1
	c.mu.Unlock()
	for _, p := range c.prods {
		p.close()
	}
	if c.out >= 0 {
		unix.Close(c.out)
	}
	if err == nil && c.died {
		err = errors.New("the native writer ended without closing the stream (killed, or exited early)")
	}
	if err != nil && !errors.Is(err, fdio.ErrStopped) {
		c.err = fmt.Errorf("edge %s: %w", c.edge, err)
	}
	close(c.done)
}

func (p *mqProducer) close() {
	if p.fd >= 0 {
		unix.Close(p.fd)
		p.fd = -1
	}
}

// loop runs passes until the stream has been delivered, the consumer has
// gone, or Close stops it.
func (c *MQ) loop() error {
	for {
		if c.ctl.Requested() {
			return fdio.ErrStopped
		}
		ended := c.adopt()
		moved, err := c.deliver()
		if err != nil || c.gone {
			return err
		}
		if c.nat.Reader {
			if c.nat.Ctl.ReaderGone() {
				c.gone = true
				return nil // the producers' next writes get EPIPE
			}
			if c.sentEOF {
				return nil // all sent: the native reader takes it from here
			}
		}
		if c.gotEOF && c.outStart == c.outHave && (!c.nat.Reader || c.sentEOF) {
			return nil // all delivered
		}
		fed, err := c.feed(ended)
		if err != nil {
			return err
		}
		if moved || fed {
			continue
		}
		if err := c.wait(); err != nil {
			return err
		}
	}
}

// adopt takes the producers AddWriter made, and decides the end of the
// producers under the same lock: once every producer has finished and none
// is waiting, the queue is ended and AddWriter refuses. It reports whether
// the queue is ended.
func (c *MQ) adopt() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.prods = append(c.prods, c.added...)
	c.added = nil
	if !c.ended && c.cur < 0 {
		for _, p := range c.prods {
			if p.fd >= 0 || p.start < p.have {
				return false
			}
		}
		c.ended = true
	}
	return c.ended
}

// deliver is the consumer's side of a pass: write what the pipe takes,
// then receive what the out buffer has room for, each message at the end
// of the previous payload so that the buffer is stream bytes only.
func (c *MQ) deliver() (moved bool, err error) {
	if c.nat.Reader {
		return false, nil
	}
	if c.outStart < c.outHave {
		n, err := unix.Write(c.out, c.outBuf[c.outStart:c.outHave])
		switch {
		case err == nil:
			moved = true
			c.outStart += n
			if c.outStart == c.outHave {
				c.outStart, c.outHave = 0, 0
			}
		case err == unix.EINTR || err == unix.EAGAIN:
		case fdio.IsGone(err):
			// The consumer stopped: the producers' next writes get EPIPE,
			// a native writer ErrReadersGone.
			c.gone = true
			if c.nat.Writer {
				c.nat.Ctl.MarkReaderGone()
			}
			return true, nil
		default:
			return moved, fmt.Errorf("write to reader: %w", err)
		}
	}
	// A full out buffer empties before it takes more: its bytes are not
	// moved to make room (the queue holds what comes meanwhile).
	if c.gotEOF {
		return moved, nil
	}
	gone := c.nat.Writer && c.writerGone.Load() // before receiving: what it sent is drained
	have, eof, err := mqUnpack(c.recv, c.msgsize, c.outBuf, c.outHave)
	moved = moved || have > c.outHave || eof
	c.outHave, c.gotEOF = have, eof
	if err != nil && err != unix.EAGAIN {
		return moved, fmt.Errorf("receive from mq %s: %w", c.name, err)
	}
	if gone && !eof && err == unix.EAGAIN {
		// The native writer ended and the queue is empty: no MQEOF comes.
		c.gotEOF, c.died, moved = true, true, true
	}
	return moved, nil
}

// feed is the producers' side of a pass: read what each pipe holds (as
// far as its buffer has room), send what the queue takes, the producers in
// turn, but only the one whose long line is half sent while it is. Once
// the queue is ended (adopt), it sends the end of stream.
func (c *MQ) feed(ended bool) (moved bool, err error) {
	full := false
	n := len(c.prods)
	for k := range n {
		i := (c.next + k) % n
		p := c.prods[i]
		got, err := p.read()
		if err != nil {
			return moved, fmt.Errorf("read from producer: %w", err)
		}
		moved = moved || got
		if full || (c.cur >= 0 && c.cur != i) {
			continue
		}
		sent, err := c.pack(i)
		moved = moved || sent
		if errors.Is(err, unix.EAGAIN) {
			full = true
		} else if err != nil {
			return moved, fmt.Errorf("send to mq %s: %w", c.name, err)
		}
	}
	if n > 0 {
		c.next = (c.next + 1) % n
	}
	if !full && !c.sentEOF && ended {
		err := mqueue.Send(c.send, []byte{MQEOF})
		switch {
		case err == nil:
			c.sentEOF = true
			moved = true
		case err == unix.EAGAIN:
			full = true
		case err != unix.EINTR:
			return moved, fmt.Errorf("send end of stream to mq %s: %w", c.name, err)
		}
	}
	c.full = full
	return moved, nil
}

// read takes what the pipe holds into the buffer's free room. At the
// pipe's end the fd is closed (what is left in the buffer is still sent).
func (p *mqProducer) read() (bool, error) {
	if p.fd < 0 {
		return false, nil
	}
	// Near the end of the buffer, move the unsent rest to its start, but
	// only while the rest is small (a partial line): a large rest waits
	// to be sent instead of being copied.
	room := len(p.buf) - 1 - p.have
	if room < len(p.buf)/4 && p.start > 0 && p.have-p.start < len(p.buf)/4 {
		p.have = copy(p.buf, p.buf[p.start:p.have])
		p.start = 0
		room = len(p.buf) - 1 - p.have
	}
	if room < len(p.buf)/8 {
		return false, nil
	}
	for {
		n, err := unix.Read(p.fd, p.buf[p.have:len(p.buf)-1])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false, nil
		case err != nil:
			return false, err
		case n == 0:
			p.close()
			return true, nil
		}
		p.have += n
		return true, nil
	}
}

// pack sends producer i's buffered bytes (mqProducer.pack), keeping
// track of whose long line is half sent.
func (c *MQ) pack(i int) (sent bool, err error) {
	mid := c.cur == i
	msgs, payload, err := c.prods[i].pack(c.send, c.msgsize, &mid)
	switch {
	case mid:
		c.cur = i
	case c.cur == i:
		c.cur = -1
	}
	if msgs > 0 {
		c.bytes.Add(payload)
		c.msgs.Add(int64(msgs))
	}
	return msgs > 0, err
}

// pack sends the buffered bytes to the queue send: as many whole lines as
// fit in msgsize-1 bytes per message; a longer line in msgsize-1 pieces;
// the stream's unterminated last bytes once the pipe has ended (fd < 0).
// Each message's trailer is written over the byte after its payload and
// put back after the send. *mid says whether the last message sent left a
// line half sent, and is kept up to date. It returns unix.EAGAIN when the
// queue is full.
func (p *mqProducer) pack(send, msgsize int, mid *bool) (msgs int, payload int64, err error) {
	P := msgsize - 1
	defer func() {
		if p.start == p.have {
			p.start, p.have = 0, 0
		}
	}()
	for p.start < p.have {
		a, win := p.start, min(p.have-p.start, P)
		var b int
		var flag byte
		if k := bytes.LastIndexByte(p.buf[a:a+win], '\n'); k >= 0 {
			b, flag = a+k+1, mqEnds
		} else if win == P {
			b, flag = a+P, mqContinues
		} else if p.fd < 0 {
			b, flag = p.have, mqEnds
		} else {
			return msgs, payload, nil // a partial line: wait for the rest
		}
		saved := p.buf[b]
		p.buf[b] = flag
		err := mqueue.Send(send, p.buf[a:b+1])
		p.buf[b] = saved
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return msgs, payload, err
		}
		msgs++
		payload += int64(b - a)
		p.start = b
		*mid = flag == mqContinues
	}
	return msgs, payload, nil
}

// mqUnpack receives messages from the queue recv into buf[have:] while a
// whole message fits, each at the end of the previous payload, so that
// buf[:have] is stream bytes only. It returns the new have, whether the
// end of stream came, and unix.EAGAIN when the queue is empty.
func mqUnpack(recv, msgsize int, buf []byte, have int) (int, bool, error) {
	for len(buf)-have >= msgsize {
		n, err := mqueue.Receive(recv, buf[have:])
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return have, false, err
		case n == 0:
			return have, false, errors.New("empty message")
		}
		if buf[have+n-1] == MQEOF {
			return have, true, nil
		}
		have += n - 1
	}
	return have, false, nil
}

// wait sleeps in poll(2) until a pipe the last pass was stopped by can go
// on, or Close or AddWriter writes the eventfd.
func (c *MQ) wait() error {
	var pfd [8]unix.PollFd
	fds := append(pfd[:0], unix.PollFd{Fd: int32(c.ctl.FD), Events: unix.POLLIN})
	if c.outStart < c.outHave {
		fds = append(fds, unix.PollFd{Fd: int32(c.out), Events: unix.POLLOUT})
	}
	// A native end's side of the queue is the queue itself: wait for a
	// message from its writer, or for room its reader made.
	if c.nat.Writer && !c.gotEOF && len(c.outBuf)-c.outHave >= c.msgsize {
		fds = append(fds, unix.PollFd{Fd: int32(c.recv), Events: unix.POLLIN})
	}
	if c.nat.Reader && c.full {
		fds = append(fds, unix.PollFd{Fd: int32(c.send), Events: unix.POLLOUT})
	}
	for _, p := range c.prods {
		if p.fd >= 0 && len(p.buf)-1-p.have >= len(p.buf)/8 {
			fds = append(fds, unix.PollFd{Fd: int32(p.fd), Events: unix.POLLIN})
		}
	}
	if len(fds) == 1 {
		// Nothing could move and nothing is waited for: a bug, not a hang.
		return fmt.Errorf("mq %s: bridge stuck (out %d/%d, %d producers)", c.name, c.outStart, c.outHave, len(c.prods))
	}
	for {
		_, err := unix.Poll(fds, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		if fds[0].Revents != 0 {
			var v [8]byte
			unix.Read(c.ctl.FD, v[:]) // drain: a stop is in ctl.stop, producers in added
		}
		return nil
	}
}

// Wait blocks until the stream has been delivered, the consumer has gone,
// or Close stopped the bridge, and returns its error, naming the edge.
func (c *MQ) Wait() error {
	<-c.done
	return c.err
}

// Close stops the bridge, waits for it and closes the queue's descriptors.
// Safe to call more than once.
func (c *MQ) Close() {
	c.closeOnce.Do(func() {
		c.ctl.Request()
		c.mu.Lock()
		c.ctl.Kick()
		c.mu.Unlock()
		<-c.done
		unix.Close(c.send)
		unix.Close(c.recv)
	})
}

// Counts are the payload bytes and the messages sent so far.
func (c *MQ) Counts() (bytes, msgs int64) { return c.bytes.Load(), c.msgs.Load() }

// PackMQ sends the whole lines of p to the queue send, in messages of at
// most msgsize bytes framed as the bridge frames them, and returns how
// many bytes of p went; a partial last line waits (as in the bridge, for
// the rest of its line). p's backing array must have one spare byte after
// p: the trailer is written there and put back. *mid is the bridge's
// "a long line is half sent", kept up to date. unix.EAGAIN: the queue is
// full. For measuring the framing alone (internal/bench).
func PackMQ(send, msgsize int, p []byte, mid *bool) (int, error) {
	pr := mqProducer{fd: 0, buf: p[:len(p)+1], have: len(p)}
	_, _, err := pr.pack(send, msgsize, mid)
	if pr.have == 0 {
		return len(p), err
	}
	return pr.start, err
}

// UnpackMQ is the bridge's receiving side (mqUnpack), for measuring it.
func UnpackMQ(recv, msgsize int, buf []byte, have int) (int, bool, error) {
	return mqUnpack(recv, msgsize, buf, have)
}

// Fill is the queue's messages counted at msgsize each (mq_getattr says
// how many, not how long), and the queue's size at that rate. Callers
// stop asking before Close, which closes the descriptor asked.
func (b *MQ) Fill() (used, capacity int64) {
	a, err := mqueue.GetAttr(b.send)
	if err != nil {
		return 0, 0
	}
	return a.Curmsgs * a.Msgsize, a.Maxmsg * a.Msgsize
}
