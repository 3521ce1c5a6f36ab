package native

import (
	"fmt"
	"io"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/ring"
)

var errPipe = syscall.EPIPE

// The shm port: the ring of package ring in the segment fd= names, mapped
// whole. The writer reserves a contiguous span of free space, fills it
// and commits; a reader borrows a contiguous span of what is written,
// uses it where it lies and releases it. Write and Read are the same
// with a copy, for code that wants a stream.

// mapRing maps the segment of spec s and checks its header.
func mapRing(s Spec) (*ring.Ring, []byte, error) {
	var st unix.Stat_t
	if err := unix.Fstat(s.Fd, &st); err != nil {
		return nil, nil, fmt.Errorf("port %s: fd %d: %w", s.Name, s.Fd, err)
	}
	if st.Size < ring.HeaderSize {
		return nil, nil, fmt.Errorf("port %s: fd %d holds %d bytes, not a ring", s.Name, s.Fd, st.Size)
	}
	mem, err := unix.Mmap(s.Fd, 0, int(st.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("port %s: map the ring: %w", s.Name, err)
	}
	r, err := ring.Attach(mem)
	if err != nil {
		v, isRing := ringVersion(mem), string(mem[:8]) == "ipcflowR"
		unix.Munmap(mem)
		if isRing && v != ring.Version {
			return nil, nil, fmt.Errorf("port %s: ring layout version %d, this client speaks %d: build the stage against this ipcflow's client", s.Name, v, ring.Version)
		}
		return nil, nil, fmt.Errorf("port %s: %w", s.Name, err)
	}
	if s.Capacity != 0 && r.Capacity() != s.Capacity || r.Readers() != s.Readers {
		unix.Munmap(mem)
		return nil, nil, fmt.Errorf("port %s: the ring has %d bytes and %d readers, the description says %d and %d", s.Name, r.Capacity(), r.Readers(), s.Capacity, s.Readers)
	}
	return r, mem, nil
}

func ringVersion(mem []byte) uint32 {
	return uint32(mem[8]) | uint32(mem[9])<<8 | uint32(mem[10])<<16 | uint32(mem[11])<<24
}

// ShmWriter is a native stage's writing end of an shm edge.
type ShmWriter struct {
	spec   Spec
	ring   *ring.Ring
	mem    []byte
	w      *ring.Writer
	closed bool
}

// OpenShmWriter opens port (IPCFLOW_PORT_<PORT>) as an shm writer.
func OpenShmWriter(port string) (*ShmWriter, error) {
	s, err := Lookup(port)
	if err != nil {
		return nil, err
	}
	return NewShmWriter(s)
}

// NewShmWriter opens the shm writer that s describes.
func NewShmWriter(s Spec) (*ShmWriter, error) {
	if s.Type != "shm" || s.Role != RoleWriter {
		return nil, errRole(s, "shm writer")
	}
	r, mem, err := mapRing(s)
	if err != nil {
		return nil, err
	}
	return &ShmWriter{spec: s, ring: r, mem: mem, w: r.Writer()}, nil
}

// Reserve waits for free space and returns it: one contiguous span of the
// ring (up to the end of its data area, so it may be shorter than the
// free space). Fill a prefix of it and Commit that many bytes. It returns
// ErrReadersGone once every reader has gone.
func (w *ShmWriter) Reserve() ([]byte, error) {
	span, err := w.w.Reserve()
	if err != nil {
		return nil, ErrReadersGone
	}
	return span, nil
}

// Commit publishes the first n bytes of the span Reserve returned.
func (w *ShmWriter) Commit(n int) { w.w.Commit(n) }

// Write copies p into the ring, waiting for room as a pipe's writer does.
func (w *ShmWriter) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		span, err := w.Reserve()
		if err != nil {
			return done, err
		}
		n := Copy(span, p[done:])
		w.Commit(n)
		done += n
	}
	return done, nil
}

// Capacity is the ring's size in bytes: the most one Reserve can give.
func (w *ShmWriter) Capacity() int64 { return w.ring.Capacity() }

// Close ends the stream (readers drain it, then see io.EOF) and lets go
// of the port, its liveness pipe included.
func (w *ShmWriter) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	w.w.Close()
	return release(w.spec, w.mem)
}

// release unmaps mem and closes the port's descriptors.
func release(s Spec, mem []byte) error {
	var err error
	if mem != nil {
		err = unix.Munmap(mem)
	}
	for _, fd := range []int{s.Fd, s.Ctl, s.Life} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	return err
}

// ShmReader is a native stage's reading end of an shm edge (one cursor of
// the ring: a fan-out's readers each have their own).
type ShmReader struct {
	spanReader
	spec   Spec
	mem    []byte
	closed bool
}

// OpenShmReader opens port (IPCFLOW_PORT_<PORT>) as an shm reader.
func OpenShmReader(port string) (*ShmReader, error) {
	s, err := Lookup(port)
	if err != nil {
		return nil, err
	}
	return NewShmReader(s)
}

// NewShmReader opens the shm reader that s describes.
func NewShmReader(s Spec) (*ShmReader, error) {
	if s.Type != "shm" || s.Role != RoleReader {
		return nil, errRole(s, "shm reader")
	}
	r, mem, err := mapRing(s)
	if err != nil {
		return nil, err
	}
	return &ShmReader{spanReader: spanReader{ring: r, r: r.Reader(s.Reader)}, spec: s, mem: mem}, nil
}

// Close stops reading: the writer no longer waits for this reader. It
// lets go of the port, its liveness pipe included.
func (r *ShmReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.r.Close()
	return release(r.spec, r.mem)
}

// ReadFrom moves src's bytes into the ring, each read(2) straight into
// reserved space (no copy in between): io.Copy uses it.
func (w *ShmWriter) ReadFrom(src io.Reader) (int64, error) { return readInto(w, src) }
