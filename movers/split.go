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

	scratch  []byte // NextFile: the end of a block, read back
	noSplice bool   // NextFile: the input is no pipe
}

// NewSplitter reads fd in blocks of about size bytes.
func NewSplitter(fd, size int) *Splitter {
	s := &Splitter{fd: fd, size: size}
	s.carry = make([]byte, 0, 64<<10)
	return s
}

// SetSize changes the size of the blocks to come.
func (s *Splitter) SetSize(size int) { s.size = size }

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
	// Cut after the last newline within size (the carry may have made
	// buf longer), else after the first one past it.
	i := bytes.LastIndexByte(buf[:min(len(buf), s.size)], '\n')
	if i < 0 && len(buf) > s.size {
		if j := bytes.IndexByte(buf[s.size:], '\n'); j >= 0 {
			i = s.size + j
		}
	}
	if i >= 0 {
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

// NextFile writes the next block into dst, an empty regular file (a
// memfd), from offset 0, and returns its length: 0 at the end of the
// stream. The bytes go from a pipe into the file with splice(2), so
// they never enter user space; only the end of the block is read back,
// from the end towards its last newline, to find the cut. What follows
// the cut is kept for the next block and cut off dst. dst's own file
// offset is left at 0, for the process that reads it.
func (s *Splitter) NextFile(dst int) (int64, error) {
	if s.eof && len(s.carry) == 0 {
		return 0, nil
	}
	var off int64
	if len(s.carry) > 0 {
		if err := pwriteAll(dst, s.carry, 0); err != nil {
			return 0, err
		}
		off = int64(len(s.carry))
		s.carry = s.carry[:0]
	}
	size := int64(s.size)
	if off < size && !s.eof {
		n, err := s.fill(dst, off, size-off, true)
		if err != nil {
			return 0, err
		}
		off += n
	}
	if s.eof {
		return off, nil
	}
	// The last newline within size (the carry may have made the block
	// longer), read back from there; else the first one past it.
	scratch := s.scratchBuf()
	for e := min(off, size); e > 0; {
		start := max(0, e-int64(len(scratch)))
		if err := preadFull(dst, scratch[:e-start], start); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(scratch[:e-start], '\n'); i >= 0 {
			cut := start + int64(i) + 1
			return cut, s.keepTail(dst, cut, off)
		}
		e = start
	}
	for start := size; start < off; start += int64(len(scratch)) {
		n := min(int64(len(scratch)), off-start)
		if err := preadFull(dst, scratch[:n], start); err != nil {
			return 0, err
		}
		if i := bytes.IndexByte(scratch[:n], '\n'); i >= 0 {
			cut := start + int64(i) + 1
			return cut, s.keepTail(dst, cut, off)
		}
	}
	// A line longer than a block: read on to its newline.
	for !s.eof {
		n, err := s.fill(dst, off, int64(len(scratch)), false)
		if err != nil {
			return 0, err
		}
		if n == 0 {
			break
		}
		if err := preadFull(dst, scratch[:n], off); err != nil {
			return 0, err
		}
		if i := bytes.IndexByte(scratch[:n], '\n'); i >= 0 {
			cut := off + int64(i) + 1
			return cut, s.keepTail(dst, cut, off+n)
		}
		off += n
	}
	return off, nil
}

// keepTail moves dst's bytes [cut, end) into the carry and cuts dst at cut.
func (s *Splitter) keepTail(dst int, cut, end int64) error {
	if end > cut {
		s.carry = append(s.carry[:0], make([]byte, end-cut)...)
		if err := preadFull(dst, s.carry, cut); err != nil {
			return err
		}
	}
	if err := unix.Ftruncate(dst, cut); err != nil {
		return fmt.Errorf("truncate a block: %w", err)
	}
	return nil
}

func (s *Splitter) scratchBuf() []byte {
	if s.scratch == nil {
		s.scratch = make([]byte, 64<<10)
	}
	return s.scratch
}

// fill moves up to n bytes of the input into dst at off (all n unless the
// stream ends, when full) and returns how many it moved; the end of the
// stream sets s.eof.
func (s *Splitter) fill(dst int, off, n int64, full bool) (int64, error) {
	var moved int64
	for moved < n {
		var k int
		var err error
		if !s.noSplice {
			o := off + moved
			k64, e := unix.Splice(s.fd, nil, dst, &o, int(min(n-moved, 1<<20)), unix.SPLICE_F_MOVE)
			k, err = int(k64), e
			if err == unix.EINVAL || err == unix.ENOSYS {
				s.noSplice = true // not a pipe: read and write
				continue
			}
		} else {
			buf := s.scratchBuf()
			k, err = readInto(s.fd, buf[:min(n-moved, int64(len(buf)))])
			if err == nil && k > 0 {
				err = pwriteAll(dst, buf[:k], off+moved)
			}
		}
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if err := fdio.WaitFD(s.fd, unix.POLLIN, nil); err != nil {
				return moved, err
			}
			continue
		case err != nil:
			return moved, fmt.Errorf("read: %w", err)
		case k == 0:
			s.eof = true
			return moved, nil
		}
		moved += int64(k)
		if !full {
			return moved, nil
		}
	}
	return moved, nil
}

func pwriteAll(fd int, p []byte, off int64) error {
	for len(p) > 0 {
		n, err := unix.Pwrite(fd, p, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("write a block: %w", err)
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

func preadFull(fd int, p []byte, off int64) error {
	for len(p) > 0 {
		n, err := unix.Pread(fd, p, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("read a block back: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("read a block back: short file")
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// SendFile writes n bytes of src, a regular file, from offset 0 into dst:
// splice(2) into a pipe, sendfile(2) into anything else, so that the
// bytes stay in the kernel; read and write where neither applies. A
// reader of dst that has gone is fdio.ErrReaderGone.
func SendFile(dst, src int, n int64) error {
	var off int64
	useSendfile := fdio.KindOf(dst) != fdio.KindPipe
	for off < n {
		var k int
		var err error
		if useSendfile {
			o := off
			k, err = unix.Sendfile(dst, src, &o, int(min(n-off, 1<<30)))
		} else {
			o := off
			var k64 int64
			k64, err = unix.Splice(src, &o, dst, nil, int(min(n-off, 1<<20)), unix.SPLICE_F_MOVE)
			k = int(k64)
		}
		switch {
		case err == nil && k == 0:
			return fmt.Errorf("send a block: short file")
		case err == nil:
			off += int64(k)
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			if err := fdio.WaitFD(dst, unix.POLLOUT, nil); err != nil {
				return err
			}
		case err == unix.EPIPE || err == unix.ECONNRESET:
			return fdio.ReaderGone()
		case err == unix.EINVAL || err == unix.ENOSYS:
			return copyFileRange(dst, src, off, n)
		default:
			return fmt.Errorf("send a block: %w", err)
		}
	}
	return nil
}

// copyFileRange is SendFile's fallback: pread and write.
func copyFileRange(dst, src int, off, n int64) error {
	bp := fdio.Buffer()
	defer fdio.PutBuffer(bp)
	buf := *bp
	for off < n {
		k := int(min(n-off, int64(len(buf))))
		if err := preadFull(src, buf[:k], off); err != nil {
			return err
		}
		if err := WriteAll(dst, buf[:k]); err != nil {
			return err
		}
		off += int64(k)
	}
	return nil
}
