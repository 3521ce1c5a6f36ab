package native

import (
	"io"

	"github.com/ipcflow/ipcflow/ring"
)

// spanReader is what the shm and mmap readers share: a reader of a ring
// (the shm ring, or the linear ring over an mmap recording) whose spans
// are read where they lie, and how its end is told.
type spanReader struct {
	ring *ring.Ring
	r    *ring.Reader
}

// Borrow waits for data and returns the next readable span, in the ring
// itself (contiguous, so it may stop at the end of the data area before
// the written data does). It stays valid and unchanged until Release. At
// the end of the stream it returns io.EOF, or ErrWriterDied when the
// writer ended without closing it.
func (r *spanReader) Borrow() ([]byte, error) {
	span, err := r.r.Peek()
	if err != nil {
		return nil, r.end()
	}
	return span, nil
}

func (r *spanReader) end() error {
	if r.ring.WriterDied() {
		return ErrWriterDied
	}
	return io.EOF
}

// Release gives back the first n bytes of the span Borrow returned: the
// writer may now write over them.
func (r *spanReader) Release(n int) { r.r.Release(n) }

// Read copies the next bytes of the stream into p, as a pipe's read does.
func (r *spanReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	span, err := r.Borrow()
	if err != nil {
		return 0, err
	}
	n := Copy(p, span)
	r.Release(n)
	return n, nil
}

// WriteTo moves the rest of the stream into w straight from the ring (no
// copy in between): io.Copy uses it.
func (r *spanReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		span, err := r.Borrow()
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		n, err := w.Write(span)
		r.Release(n)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
}

// spanWriter is what the shm and mmap writers share: space reserved where
// the bytes will lie, then committed.
type spanWriter interface {
	Reserve() ([]byte, error)
	Commit(n int)
}

// readInto moves src's bytes into w, each read(2) straight into reserved
// space (no copy in between), to src's end.
func readInto(w spanWriter, src io.Reader) (int64, error) {
	var total int64
	for {
		span, err := w.Reserve()
		if err != nil {
			return total, err
		}
		n, err := src.Read(span)
		if n > 0 {
			w.Commit(n)
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}
