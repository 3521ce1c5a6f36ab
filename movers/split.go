package movers

import (
	"bytes"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/fdio"
)

// A replicated stage (SPEC 11) cuts its input into blocks of whole lines
// and gives each block to one copy of its command. This file holds the
// data movers of that: Splitter cuts the blocks, LineMerger joins several
// streams a whole line at a time, and WriteAll / ReadFull are the plain
// loops on raw fds the replica runner (exec/replicarun.go) uses.
//
// The work per byte is a read(2) into a block and a write(2) out of it;
// per block, a search backwards from the block's end for its last
// newline (memrchr over the last, partial line only). Nothing looks at
// the lines in between, and blocks come from a pool: no allocation per
// block once the pool is warm.

// Splitter reads a stream and cuts it into blocks of whole lines of about
// Size bytes: a block ends at the last newline within its first Size
// bytes, and a line longer than Size is kept whole (its block grows to
// its end). The last block may lack a final newline, as the stream did.
type Splitter struct {
	fd    int
	size  int
	carry []byte // bytes after the last block's cut: the next block's start
	eof   bool
	pool  sync.Pool
}

// NewSplitter reads fd in blocks of about size bytes.
func NewSplitter(fd, size int) *Splitter {
	s := &Splitter{fd: fd, size: size}
	s.carry = make([]byte, 0, 64<<10)
	return s
}

// Block is one block of whole lines. Give it back with Put once written.
type Block struct {
	Data []byte
	Seq  int // 0, 1, 2... in the order of the input
	buf  []byte
}

// blockCap is the capacity a pooled block keeps: a block that grew for a
// long line past four times this is dropped rather than kept.
func (s *Splitter) get() []byte {
	if b, ok := s.pool.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, s.size+64<<10)
}

// Put gives a block's buffer back to the splitter's pool.
func (s *Splitter) Put(b *Block) {
	if b == nil || b.buf == nil || cap(b.buf) > 4*(s.size+64<<10) {
		return
	}
	buf := b.buf[:0]
	b.buf, b.Data = nil, nil
	s.pool.Put(&buf)
}

// Next returns the next block, or nil at the end of the stream. seq is
// the caller's count, stored in the block.
func (s *Splitter) Next(seq int) (*Block, error) {
	if s.eof && len(s.carry) == 0 {
		return nil, nil
	}
	buf := append(s.get(), s.carry...)
	s.carry = s.carry[:0]
	// Fill to size.
	for len(buf) < s.size && !s.eof {
		n, err := readInto(s.fd, buf[len(buf):s.size])
		if err != nil {
			return nil, err
		}
		if n == 0 {
			s.eof = true
			break
		}
		buf = buf[:len(buf)+n]
	}
	if s.eof {
		if len(buf) == 0 {
			return nil, nil
		}
		return &Block{Data: buf, Seq: seq, buf: buf}, nil
	}
	// Cut after the last newline.
	if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
		s.carry = append(s.carry, buf[i+1:]...)
		return &Block{Data: buf[:i+1], Seq: seq, buf: buf}, nil
	}
	// A line longer than a block: read on to its newline, keeping it
	// whole.
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)] // grow
		}
		start := len(buf)
		n, err := readInto(s.fd, buf[start:cap(buf)])
		if err != nil {
			return nil, err
		}
		if n == 0 {
			s.eof = true
			return &Block{Data: buf, Seq: seq, buf: buf}, nil
		}
		buf = buf[:start+n]
		if i := bytes.IndexByte(buf[start:], '\n'); i >= 0 {
			cut := start + i + 1
			s.carry = append(s.carry, buf[cut:]...)
			return &Block{Data: buf[:cut], Seq: seq, buf: buf}, nil
		}
	}
}

// readInto reads once into p (len(p) > 0), retrying EINTR and waiting on
// a non-blocking fd. 0 is the end of the stream.
func readInto(fd int, p []byte) (int, error) {
	for {
		n, err := unix.Read(fd, p)
		switch {
		case err == nil:
			return n, nil
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			if err := fdio.WaitFD(fd, unix.POLLIN, nil); err != nil {
				return 0, err
			}
		case err == unix.EIO && fdio.KindOf(fd) == fdio.KindChar:
			return 0, nil // a terminal that hung up
		default:
			return 0, fmt.Errorf("read: %w", err)
		}
	}
}

// ReadSome is readInto for the replica runner: one read(2) into p.
func ReadSome(fd int, p []byte) (int, error) { return readInto(fd, p) }

// WriteAll writes p to fd, retrying short writes and EINTR and waiting on
// a non-blocking fd. A reader that has gone is fdio.ErrReaderGone.
func WriteAll(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := unix.Write(fd, p)
		switch {
		case err == nil:
			p = p[n:]
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			if err := fdio.WaitFD(fd, unix.POLLOUT, nil); err != nil {
				return err
			}
		case err == unix.EPIPE || err == unix.ECONNRESET:
			return fdio.ReaderGone()
		default:
			return fmt.Errorf("write: %w", err)
		}
	}
	return nil
}

// LineMerger writes several streams into one fd a whole line at a time
// (the unordered replicas' join): each source's reads are cut after
// their last newline and written under one lock, and the part after it
// waits for the rest of its line. A line longer than a source's buffer
// holds the lock until its newline, so that no other source's bytes land
// inside it. What is left without a newline when a source ends is
// written by Finish, after every source has ended.
type LineMerger struct {
	fd    int
	mu    sync.Mutex
	tails [][]byte
	err   error
}

// NewLineMerger merges into fd.
func NewLineMerger(fd int) *LineMerger { return &LineMerger{fd: fd} }

// mergeBuf is each source's buffer.
const mergeBuf = 256 << 10

// Copy moves src into the merger until its end of file. It returns the
// first write error (fdio.ErrReaderGone when the reader left) or read
// error.
func (m *LineMerger) Copy(src int) error {
	bp := fdio.Buffer()
	defer fdio.PutBuffer(bp)
	buf := (*bp)[:mergeBuf]
	have := 0
	locked := false // inside a long line: the lock is held
	defer func() {
		if locked {
			m.mu.Unlock()
		}
	}()
	for {
		n, err := readInto(src, buf[have:])
		if err != nil {
			return err
		}
		if n == 0 {
			if have > 0 {
				if locked {
					// The long line ends without a newline: finish it
					// now, under the lock it holds.
					return m.write(buf[:have])
				}
				m.mu.Lock()
				m.tails = append(m.tails, append([]byte(nil), buf[:have]...))
				m.mu.Unlock()
			}
			return nil
		}
		newStart := have
		have += n
		i := bytes.LastIndexByte(buf[newStart:have], '\n')
		if i < 0 {
			if have < len(buf) {
				continue
			}
			// A full buffer and no newline: a long line. Write it
			// under the lock, and keep the lock to its end.
			if !locked {
				m.mu.Lock()
				locked = true
			}
			if err := m.write(buf[:have]); err != nil {
				return err
			}
			have = 0
			continue
		}
		cut := newStart + i + 1
		if !locked {
			m.mu.Lock()
		}
		err = m.write(buf[:cut])
		m.mu.Unlock()
		locked = false
		if err != nil {
			return err
		}
		have = copy(buf, buf[cut:have])
	}
}

// write writes p, the lock held; the first error sticks.
func (m *LineMerger) write(p []byte) error {
	if m.err != nil {
		return m.err
	}
	m.err = WriteAll(m.fd, p)
	return m.err
}

// Finish writes the sources' last, unterminated lines, in the order the
// sources ended.
func (m *LineMerger) Finish() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range m.tails {
		if err := m.write(t); err != nil {
			return err
		}
	}
	m.tails = nil
	return m.err
}
