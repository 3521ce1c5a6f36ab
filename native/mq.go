package native

import (
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/mqueue"
)

// The mq port: the edge's POSIX queue, fd= a descriptor of the stage's
// own (blocking), framed as the mq edge's bridge frames it, so that
// either end may be a bridge: each message is its payload followed by
// one trailer byte,
//
//	MQEnds       the payload ends a line, or the stream's last bytes
//	MQContinues  the payload's last line goes on in the next message
//	MQEOF        (the trailer alone) end of stream
//
// so a message carries at most msgsize-1 payload bytes. A writer that
// stops without sending MQEOF is marked dead in the control page by
// ipcflow; the reader sees ErrWriterDied once the queue is empty.

// The trailer byte of a message.
const (
	MQEnds      = 0
	MQContinues = 1
	MQEOF       = 2
)

// mqWait bounds one blocking send or receive: after it, the flags of the
// control page are tested again.
const mqWait = 50 * time.Millisecond

// deadline is the absolute time a blocking send or receive gives up at.
// It is only read when the queue is full (empty), so one is reused until
// a call times out on it: a stale one costs one ETIMEDOUT and a fresh
// one, where a clock read per message would cost every message.
type deadline struct{ ts unix.Timespec }

func (d *deadline) renew() {
	d.ts = unix.NsecToTimespec(time.Now().Add(mqWait).UnixNano())
}

// past is a deadline already gone: a send or receive that cannot go at
// once returns unix.ETIMEDOUT.
var past = &unix.Timespec{}

func openMQ(s Spec, role string) (*Control, error) {
	if s.Type != "mq" || s.Role != role {
		return nil, errRole(s, "mq "+role)
	}
	a, err := mqueue.GetAttr(s.Fd)
	if err != nil {
		return nil, fmt.Errorf("port %s: fd %d is not a message queue: %w", s.Name, s.Fd, err)
	}
	if a.Msgsize != s.MsgSize {
		return nil, fmt.Errorf("port %s: the queue's messages are %d bytes, the description says %d", s.Name, a.Msgsize, s.MsgSize)
	}
	ctl, err := AttachControl(s.Ctl)
	if err != nil {
		return nil, fmt.Errorf("port %s: %w", s.Name, err)
	}
	return ctl, nil
}

// MQWriter is a native stage's writing end of an mq edge.
type MQWriter struct {
	spec   Spec
	ctl    *Control
	buf    []byte // msgsize: a message being framed
	dl     deadline
	closed bool
}

// OpenMQWriter opens port (IPCFLOW_PORT_<PORT>) as an mq writer.
func OpenMQWriter(port string) (*MQWriter, error) {
	s, err := Lookup(port)
	if err != nil {
		return nil, err
	}
	return NewMQWriter(s)
}

// NewMQWriter opens the mq writer that s describes.
func NewMQWriter(s Spec) (*MQWriter, error) {
	ctl, err := openMQ(s, RoleWriter)
	if err != nil {
		return nil, err
	}
	return &MQWriter{spec: s, ctl: ctl, buf: make([]byte, s.MsgSize)}, nil
}

// MaxPayload is the most one message carries: msgsize-1.
func (w *MQWriter) MaxPayload() int { return int(w.spec.MsgSize) - 1 }

// Send sends msg as one message (at most MaxPayload bytes). When msg has
// a spare byte of capacity after it, the trailer is written there and
// msg goes with no copy; otherwise it is copied once.
func (w *MQWriter) Send(msg []byte) error {
	if len(msg) > w.MaxPayload() {
		return fmt.Errorf("port %s: a message of %d bytes, above the queue's %d", w.spec.Name, len(msg), w.MaxPayload())
	}
	return w.sendFlag(msg, MQEnds)
}

func (w *MQWriter) sendFlag(msg []byte, flag byte) error {
	if cap(msg) > len(msg) {
		m := msg[:len(msg)+1]
		saved := m[len(msg)]
		m[len(msg)] = flag
		err := w.send(m)
		m[len(msg)] = saved
		return err
	}
	n := copy(w.buf, msg)
	w.buf[n] = flag
	return w.send(w.buf[:n+1])
}

// send sends one framed message, waiting for room in bounded steps.
func (w *MQWriter) send(m []byte) error {
	for {
		if w.ctl.ReaderGone() {
			return ErrReadersGone
		}
		err := mqueue.TrySend(w.spec.Fd, m)
		if err == unix.ETIMEDOUT {
			err = mqueue.TimedSend(w.spec.Fd, m, &w.dl.ts)
		}
		switch err {
		case nil:
			if len(m) > 1 || m[0] != MQEOF {
				w.ctl.AddSent(len(m) - 1)
			}
			return nil
		case unix.ETIMEDOUT:
			w.dl.renew()
			continue
		case unix.EINTR:
			continue
		}
		return fmt.Errorf("port %s: send: %w", w.spec.Name, err)
	}
}

// Write sends p as a stream: messages of up to MaxPayload bytes, each
// marked as ending a line or not, so that a bridge on the other side
// rebuilds exactly p.
func (w *MQWriter) Write(p []byte) (int, error) {
	P := w.MaxPayload()
	done := 0
	for done < len(p) {
		chunk := p[done:min(len(p), done+P)]
		flag := byte(MQContinues)
		if chunk[len(chunk)-1] == '\n' {
			flag = MQEnds
		}
		if err := w.sendFlag(chunk, flag); err != nil {
			return done, err
		}
		done += len(chunk)
	}
	return done, nil
}

// Close sends the end of stream and lets go of the port.
func (w *MQWriter) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	err := w.send([]byte{MQEOF})
	if errors.Is(err, ErrReadersGone) {
		err = nil // nobody to tell
	}
	if err == nil {
		w.ctl.SetWriterDone()
	}
	w.ctl.Close()
	release(w.spec, nil)
	return err
}

// MQReader is a native stage's reading end of an mq edge.
type MQReader struct {
	spec        Spec
	ctl         *Control
	buf         []byte // msgsize: the last message received
	start, have int    // buf[start:have] is payload not yet read
	dl          deadline
	eof         bool
	closed      bool
}

// OpenMQReader opens port (IPCFLOW_PORT_<PORT>) as an mq reader.
func OpenMQReader(port string) (*MQReader, error) {
	s, err := Lookup(port)
	if err != nil {
		return nil, err
	}
	return NewMQReader(s)
}

// NewMQReader opens the mq reader that s describes.
func NewMQReader(s Spec) (*MQReader, error) {
	ctl, err := openMQ(s, RoleReader)
	if err != nil {
		return nil, err
	}
	return &MQReader{spec: s, ctl: ctl, buf: make([]byte, s.MsgSize)}, nil
}

// MsgSize is the queue's message size: ReceiveInto's buffer holds it.
func (r *MQReader) MsgSize() int { return int(r.spec.MsgSize) }

// ReceiveInto receives the next message into buf (at least MsgSize
// bytes) and returns its payload's length: buf[:n]. io.EOF at the end of
// the stream; ErrWriterDied when the writer ended without it.
func (r *MQReader) ReceiveInto(buf []byte) (int, error) {
	n, _, err := r.ReceiveFramed(buf)
	return n, err
}

// ReceiveFramed is ReceiveInto that also says whether the payload's last
// line goes on in the next message (MQContinues): a reader that hands
// whole lines on, such as a replicated stage taking work from the queue,
// takes the next messages too before it lets another reader receive.
func (r *MQReader) ReceiveFramed(buf []byte) (n int, more bool, err error) {
	if r.eof {
		return 0, false, io.EOF
	}
	if len(buf) < int(r.spec.MsgSize) {
		return 0, false, fmt.Errorf("port %s: a buffer of %d bytes for messages of %d", r.spec.Name, len(buf), r.spec.MsgSize)
	}
	for {
		n, err := mqueue.TryReceive(r.spec.Fd, buf)
		if err == unix.ETIMEDOUT {
			n, err = mqueue.TimedReceive(r.spec.Fd, buf, &r.dl.ts)
		}
		switch err {
		case nil:
		case unix.EINTR:
			continue
		case unix.ETIMEDOUT:
			if !r.ctl.WriterDied() {
				r.dl.renew()
				continue
			}
			// Dead: what it sent before dying is still read.
			if n, err = mqueue.TimedReceive(r.spec.Fd, buf, past); err != nil {
				return 0, false, ErrWriterDied
			}
		default:
			return 0, false, fmt.Errorf("port %s: receive: %w", r.spec.Name, err)
		}
		return r.framed(buf, n)
	}
}

// TryReceiveFramed is ReceiveFramed without waiting: ok is false, and
// nothing received, when no message waits now. A reader that batches
// messages (the work queue's feeders) takes what waits after a first
// ReceiveFramed.
func (r *MQReader) TryReceiveFramed(buf []byte) (n int, more, ok bool, err error) {
	if r.eof {
		return 0, false, true, io.EOF
	}
	if len(buf) < int(r.spec.MsgSize) {
		return 0, false, true, fmt.Errorf("port %s: a buffer of %d bytes for messages of %d", r.spec.Name, len(buf), r.spec.MsgSize)
	}
	for {
		n, err := mqueue.TryReceive(r.spec.Fd, buf)
		switch err {
		case nil:
		case unix.EINTR:
			continue
		case unix.ETIMEDOUT:
			return 0, false, false, nil
		default:
			return 0, false, true, fmt.Errorf("port %s: receive: %w", r.spec.Name, err)
		}
		n, more, err := r.framed(buf, n)
		return n, more, true, err
	}
}

// framed reads ipcflow's framing of the n bytes of a message in buf.
func (r *MQReader) framed(buf []byte, n int) (int, bool, error) {
	if n == 0 {
		return 0, false, fmt.Errorf("port %s: an empty message (not ipcflow's framing)", r.spec.Name)
	}
	if buf[n-1] == MQEOF {
		r.eof = true
		return 0, false, io.EOF
	}
	return n - 1, buf[n-1] == MQContinues, nil
}

// Receive returns the next message's payload, in the reader's own
// buffer: valid until the next call.
func (r *MQReader) Receive() ([]byte, error) {
	if r.start < r.have {
		p := r.buf[r.start:r.have]
		r.start, r.have = 0, 0
		return p, nil
	}
	n, err := r.ReceiveInto(r.buf)
	if err != nil {
		return nil, err
	}
	return r.buf[:n], nil
}

// Read reads the stream: what is left of the last message, else the next
// one (straight into p when p holds a whole message).
func (r *MQReader) Read(p []byte) (int, error) {
	for {
		if r.start < r.have {
			n := copy(p, r.buf[r.start:r.have])
			r.start += n
			return n, nil
		}
		if len(p) >= int(r.spec.MsgSize) {
			n, err := r.ReceiveInto(p)
			if n == 0 && err == nil {
				continue
			}
			return n, err
		}
		n, err := r.ReceiveInto(r.buf)
		if err != nil {
			return 0, err
		}
		r.start, r.have = 0, n
	}
}

// Close stops reading: the writer gets ErrReadersGone.
func (r *MQReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.ctl.MarkReaderGone()
	r.ctl.Close()
	return release(r.spec, nil)
}
