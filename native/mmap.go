package native

import (
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/ring"
)

// The mmap port: fd= the file that records the whole stream (byte k at
// offset k, never written twice), ctl= a page holding a linear ring's
// header (package ring: InitLinear): the writer's published length (wpos),
// each reader's cursor, the done, dead and gone flags and the futex words,
// with the ring's handshake. The writer runs at most the header's
// capacity (the window) ahead of its slowest reader, and grows the file
// ahead of what it writes; a reader reads up to the published length,
// where it lies, and may read any of it again at random (Bytes).

// mapReserve is the address space mapped over the file once: the largest
// stream. The file grows under it; the mapping never moves.
const mapReserve = 1 << 40

// Steps in which a writer grows the file: doubling from mmapStep to
// mmapMaxStep, mmapMinStep when a file system is nearly full.
const (
	mmapMinStep = 64 << 10
	mmapStep    = 1 << 20
	mmapMaxStep = 1 << 30
)

type mmapPort struct {
	spec   Spec
	ctlMem []byte
	ring   *ring.Ring
	mem    []byte
}

func openMmap(s Spec, role string) (*mmapPort, error) {
	if s.Type != "mmap" || s.Role != role {
		return nil, errRole(s, "mmap "+role)
	}
	ctl, err := unix.Mmap(s.Ctl, 0, ring.HeaderSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("port %s: map the header: %w", s.Name, err)
	}
	r, err := ring.Attach(ctl)
	if err == nil && (!r.Linear() || r.Readers() != s.Readers) {
		err = errors.New("the header is not a linear ring of the description's readers")
	}
	if err != nil {
		v, isRing := ringVersion(ctl), string(ctl[:8]) == "ipcflowR"
		unix.Munmap(ctl)
		if isRing && v != ring.Version {
			return nil, fmt.Errorf("port %s: ring layout version %d, this client speaks %d: build the stage against this ipcflow's client", s.Name, v, ring.Version)
		}
		return nil, fmt.Errorf("port %s: %w", s.Name, err)
	}
	prot := unix.PROT_READ
	if role == RoleWriter {
		prot |= unix.PROT_WRITE
	}
	mem, err := unix.Mmap(s.Fd, 0, mapReserve, prot, unix.MAP_SHARED|unix.MAP_NORESERVE)
	if err != nil {
		unix.Munmap(ctl)
		return nil, fmt.Errorf("port %s: map the file: %w", s.Name, err)
	}
	r.SetData(mem)
	return &mmapPort{spec: s, ctlMem: ctl, ring: r, mem: mem}, nil
}

func (p *mmapPort) release() error {
	unix.Munmap(p.ctlMem)
	return release(p.spec, p.mem)
}

// MmapWriter is a native stage's writing end of an mmap edge.
type MmapWriter struct {
	*mmapPort
	w         *ring.Writer
	pos, size int64 // written; allocated in the file
	step      int64
	closed    bool
}

// OpenMmapWriter opens port (IPCFLOW_PORT_<PORT>) as an mmap writer.
func OpenMmapWriter(port string) (*MmapWriter, error) {
	s, err := Lookup(port)
	if err != nil {
		return nil, err
	}
	return NewMmapWriter(s)
}

// NewMmapWriter opens the mmap writer that s describes.
func NewMmapWriter(s Spec) (*MmapWriter, error) {
	p, err := openMmap(s, RoleWriter)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(s.Fd, &st); err != nil {
		p.release()
		return nil, fmt.Errorf("port %s: %w", s.Name, err)
	}
	return &MmapWriter{mmapPort: p, w: p.ring.Writer(), size: st.Size, step: mmapStep}, nil
}

// grow allocates the file's next step, so that a full disk is this error
// and never a SIGBUS through the mapping.
func (w *MmapWriter) grow() error {
	next := min(w.size+w.step, int64(mapReserve))
	err := allocate(w.spec.Fd, w.size, next)
	if errors.Is(err, unix.ENOSPC) && next-w.size > mmapMinStep {
		next = w.size + mmapMinStep
		err = allocate(w.spec.Fd, w.size, next)
	}
	if err != nil || next == w.size {
		return fmt.Errorf("port %s: grow the file past %d bytes: %v", w.spec.Name, w.size, err)
	}
	w.size, w.step = next, min(w.step*2, mmapMaxStep)
	return nil
}

func allocate(fd int, from, to int64) error {
	err := unix.Fallocate(fd, 0, from, to-from)
	if errors.Is(err, unix.EOPNOTSUPP) {
		err = unix.Ftruncate(fd, to)
	}
	return err
}

// Reserve waits until the writer may run further ahead of its readers and
// returns the file's next bytes, mapped, to fill in place; Commit
// publishes them. ErrReadersGone once every reader has gone.
func (w *MmapWriter) Reserve() ([]byte, error) {
	span, err := w.w.Reserve()
	if err != nil {
		return nil, ErrReadersGone
	}
	if w.pos == w.size {
		if err := w.grow(); err != nil {
			return nil, err
		}
	}
	return span[:min(int64(len(span)), w.size-w.pos)], nil
}

// Commit publishes the first n bytes of the span Reserve returned.
func (w *MmapWriter) Commit(n int) {
	w.pos += int64(n)
	w.w.Commit(n)
}

// Write appends p to the recording.
func (w *MmapWriter) Write(p []byte) (int, error) {
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

// ReadFrom appends src's bytes, each read(2) straight into the file's
// mapping: io.Copy uses it.
func (w *MmapWriter) ReadFrom(src io.Reader) (int64, error) { return readInto(w, src) }

// Close truncates the file to the stream's length and ends the stream.
func (w *MmapWriter) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	err := unix.Ftruncate(w.spec.Fd, w.pos)
	w.w.Close()
	if rerr := w.release(); err == nil {
		err = rerr
	}
	return err
}

// MmapReader is a native stage's reading end of an mmap edge.
type MmapReader struct {
	*mmapPort
	spanReader
	closed bool
}

// OpenMmapReader opens port (IPCFLOW_PORT_<PORT>) as an mmap reader.
func OpenMmapReader(port string) (*MmapReader, error) {
	s, err := Lookup(port)
	if err != nil {
		return nil, err
	}
	return NewMmapReader(s)
}

// NewMmapReader opens the mmap reader that s describes.
func NewMmapReader(s Spec) (*MmapReader, error) {
	p, err := openMmap(s, RoleReader)
	if err != nil {
		return nil, err
	}
	return &MmapReader{mmapPort: p, spanReader: spanReader{ring: p.ring, r: p.ring.Reader(s.Reader)}}, nil
}

// Bytes is the recording as published so far, mapped, for random reads:
// byte k of the stream at [k]. Published bytes never change; the slice
// stays valid until Close. Once Borrow or Read has returned io.EOF it is
// the whole stream.
func (r *MmapReader) Bytes() []byte { return r.mem[:r.spanReader.ring.WriterPos()] }

// Close stops reading (the writer no longer waits for this reader) and
// unmaps the recording.
func (r *MmapReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.r.Close()
	return r.release()
}
