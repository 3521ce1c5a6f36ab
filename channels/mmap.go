package channels

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/bridge"
	"github.com/ipcflow/ipcflow/fdio"
	"github.com/ipcflow/ipcflow/fileid"
)

// The mmap edge type: a regular file that ends up holding the whole stream,
// mapped into ipcflow's memory. The producer writes a pipe; a bridge
// splices it into the file at its end (see fill) and publishes the new
// length; a bridge per reader splices the file's pages up to that length
// into its reader's pipe (see mmapSender), so readers follow the writer
// while it writes (fan-out reads the one file, each reader at its own
// pace). On a file system that cannot splice, both bridges copy through
// the mapping instead.
//
// One large address-space reservation (mmapReserve) is mapped once over
// the file; the file grows under it with fallocate in steps, so a full
// disk is an error at a step, never a SIGBUS, and the mapping never moves
// under a reader. At the end the file is truncated to the stream's length.
//
// Backpressure: the writer runs at most mmapWindow bytes ahead of the
// slowest reader still reading, as a pipe makes a producer wait.
//
// Where the file lives:
//   - with path=, at that path, created exclusively (an existing file is an
//     error: a recording is never overwritten). It stays after the run: it
//     is the recording of the edge. It is not put in the run's manifest, for
//     the run's removal of its objects would delete it.
//   - without, <rundir>/<id>.mmap, recorded, and unlinked as soon as it is
//     mapped (both ends are in ipcflow): nothing outlives the run.

const (
	mmapReserve = 1 << 40 // address space mapped once: the largest stream
	// The file grows in steps that double from mmapStep to mmapMaxStep, so
	// a small stream takes little room (a 64 MiB first step failed a 1.5 MB
	// stream on a small file system); near a full disk the last step
	// shrinks to mmapMinStep.
	mmapMinStep  = 64 << 10
	mmapStep     = 1 << 20
	mmapMaxStep  = 1 << 30
	mmapWindow   = 64 << 20
	mmapMaxWrite = 4 << 20 // one write(2) to a reader's pipe
)

// mmapNoSplice makes new channels copy as they do on a file system that
// cannot splice (tests set it, to run those paths here).
var mmapNoSplice bool

func init() {
	register(Type{Name: "mmap", Caps: Caps{FanOut: true, Bridged: true, Native: true}, Check: checkMmap, Open: openMmap})
}

func checkMmap(o Options) error {
	if o.Size < 0 {
		return fmt.Errorf("mmap size %d is negative", o.Size)
	}
	if o.Path != "" {
		if _, err := os.Lstat(o.Path); err == nil {
			return fmt.Errorf("mmap path %s already exists (a recording is never overwritten)", o.Path)
		}
		if st, err := os.Stat(filepath.Dir(o.Path)); err != nil || !st.IsDir() {
			return fmt.Errorf("mmap path %s: no directory %s", o.Path, filepath.Dir(o.Path))
		}
	}
	return nil
}

type mmapChannel struct {
	ends
	store    bridge.Store
	path     string
	id       fileid.Identity // the file made here: only it is ever removed
	keep     bool            // path= : the file stays as the edge's recording
	fd       int
	mem      []byte
	step     int64
	in       *os.File
	inRC     syscall.RawConn
	sp       spliceCall
	noSplice bool
	length   atomic.Int64 // bytes written and published
	done     atomic.Bool  // the writer finished: length is final
	rpos     []atomic.Int64
	gone     []atomic.Bool
	wake     []chan struct{} // one per reader: "length moved"
	space    chan struct{}   // "a reader moved"
	stop     chan struct{}   // closed by Close
	chunks   atomic.Int64
	once     sync.Once
}

// mmapFile is an mmap edge's file, created and mapped.
type mmapFile struct {
	path string
	id   fileid.Identity // the file made here: only it is ever removed
	keep bool            // path= : the file stays as the edge's recording
	fd   int
	mem  []byte // mmapReserve bytes over the file
}

// createMmapFile creates the file of edge spec exclusively (recorded in
// the manifest unless it is a path= recording), maps mmapReserve bytes
// over it, and unlinks it unless it is kept: every end holds it by fd.
func createMmapFile(env Env, spec Spec) (mmapFile, error) {
	path, keep := spec.Options.Path, spec.Options.Path != ""
	if !keep {
		path = filepath.Join(env.RunDir, spec.ID+".mmap")
	}
	// With its directory's symlinks resolved: it is removed (at the end,
	// or a recording that failed) through that directory, following none.
	path, err := fileid.CanonicalPath(path)
	if err != nil {
		return mmapFile{}, fmt.Errorf("edge %s: mmap file %s: %w", spec.ID, spec.Options.Path, err)
	}
	if !keep {
		if err := env.Record(KindFile, path); err != nil {
			return mmapFile{}, fmt.Errorf("edge %s: %w", spec.ID, err)
		}
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return mmapFile{}, fmt.Errorf("edge %s: create mmap file %s: %w", spec.ID, path, err)
	}
	id, err := fileid.FdIdentity(fd)
	if err == nil && !keep {
		err = env.made(path, fd)
	}
	var mem []byte
	if err == nil {
		mem, err = unix.Mmap(fd, 0, mmapReserve, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_NORESERVE)
	}
	if err != nil {
		unix.Close(fd)
		fileid.RemoveIfSame(path, id)
		return mmapFile{}, fmt.Errorf("edge %s: map %s: %w", spec.ID, path, err)
	}
	if !keep {
		fileid.RemoveIfSame(path, id) // mapped, and both ends are here: the name can go
	}
	return mmapFile{path: path, id: id, keep: keep, fd: fd, mem: mem}, nil
}

func openMmap(env Env, spec Spec) (Channel, error) {
	if spec.HasNative() {
		return openMmapNative(env, spec)
	}
	f, err := createMmapFile(env, spec)
	if err != nil {
		return nil, err
	}
	path, id, keep, fd, mem := f.path, f.id, f.keep, f.fd, f.mem
	n := spec.Readers
	c := &mmapChannel{
		store: bridge.Store{Group: bridge.Group{Edge: spec.ID}}, path: path, id: id, keep: keep, fd: fd, mem: mem,
		step: max(spec.Options.Size, mmapStep), noSplice: mmapNoSplice,
		rpos: make([]atomic.Int64, n), gone: make([]atomic.Bool, n),
		wake: make([]chan struct{}, n), space: make(chan struct{}, 1), stop: make(chan struct{}),
	}
	w, in, err := bridge.Pipe(true)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("edge %s: %w", spec.ID, err)
	}
	c.in = in
	if c.inRC, err = in.SyscallConn(); err != nil {
		c.ends = newEnds(w, nil)
		c.Close()
		return nil, fmt.Errorf("edge %s: %w", spec.ID, err)
	}
	c.sp.init(fd, true)
	for i := range n {
		c.wake[i] = make(chan struct{}, 1)
	}
	rs, err := c.store.Start(n, c.produce, c.consume)
	c.ends = newEnds(w, rs)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("edge %s: %w", spec.ID, err)
	}
	return c, nil
}

// slowest returns the lowest cursor of the readers still reading; ok is
// false when none is.
func (c *mmapChannel) slowest() (int64, bool) {
	lo, ok := int64(0), false
	for i := range c.rpos {
		if c.gone[i].Load() {
			continue
		}
		if p := c.rpos[i].Load(); !ok || p < lo {
			lo = p
		}
		ok = true
	}
	return lo, ok
}

// grow extends the file by the next step under the mapping.
func (c *mmapChannel) grow(size int64) (int64, error) {
	return growMmapFile(c.fd, c.path, size, &c.step)
}

// growMmapFile extends the file fd (at path, for messages) from size by
// the next *step under the mapping, and doubles the step for the next
// time. Where the file system has no room for a whole step, it tries the
// smallest one, so that a stream that fits is not refused for the step's
// sake.
func growMmapFile(fd int, path string, size int64, step *int64) (int64, error) {
	next := min(size+*step, int64(mmapReserve))
	if next == size {
		return size, fmt.Errorf("mmap file %s: stream above %d bytes", path, int64(mmapReserve))
	}
	err := allocateFile(fd, size, next)
	if errors.Is(err, unix.ENOSPC) && next-size > mmapMinStep {
		next = size + mmapMinStep
		err = allocateFile(fd, size, next)
	}
	if errors.Is(err, unix.ENOSPC) {
		return size, fmt.Errorf("mmap file %s: no space left on its file system for more than %d bytes of the stream (free some, or put path= elsewhere): %w", path, size, err)
	}
	if err != nil {
		return size, fmt.Errorf("grow mmap file %s to %d bytes: %w", path, next, err)
	}
	*step = min(*step*2, mmapMaxStep)
	return next, nil
}

// allocateFile makes the file's bytes from size to next real, so that a
// full disk is an error here and never a SIGBUS through the mapping.
func allocateFile(fd int, size, next int64) error {
	err := unix.Fallocate(fd, 0, size, next-size)
	if errors.Is(err, unix.EOPNOTSUPP) {
		err = unix.Ftruncate(fd, next)
	}
	return err
}

func (c *mmapChannel) produce() (err error) {
	defer c.in.Close()
	var length, size int64
	defer func() {
		// The file is the stream, exactly.
		if terr := unix.Ftruncate(c.fd, length); terr != nil && err == nil {
			err = fmt.Errorf("truncate mmap file %s: %w", c.path, terr)
		}
		if err != nil {
			// A recording of part of a stream is not one, and left
			// there it would make the next run fail ("already exists").
			c.DiscardRecording()
		}
		c.done.Store(true)
		for _, w := range c.wake {
			poke(w)
		}
	}()
	for {
		lo, live := c.slowest()
		if !live {
			return nil // every reader gone: the producer gets EPIPE
		}
		if length-lo >= mmapWindow {
			select {
			case <-c.space:
			case <-c.stop:
				return nil
			}
			continue
		}
		if length == size {
			if size, err = c.grow(size); err != nil {
				return err
			}
		}
		n, rerr := c.fill(length, min(size, lo+mmapWindow)-length)
		if n > 0 {
			length += int64(n)
			c.length.Store(length)
			c.chunks.Add(1)
			for _, w := range c.wake {
				poke(w)
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("read from producer: %w", rerr)
		}
	}
}

// fill moves up to max bytes from the producer's pipe into the file at
// off with splice(2): the kernel copies the pipe's pages into the page
// cache with no page fault per page, which writing through the mapping
// costs (on a disk file, a fault and a block mapping per page: three times
// slower here). The readers see the same pages through the mapping. On a
// file system that cannot splice, read(2) goes through the mapping.
func (c *mmapChannel) fill(off, max int64) (int, error) {
	if c.noSplice {
		return c.in.Read(c.mem[off : off+max])
	}
	sp := &c.sp
	sp.off, sp.max = off, max
	if err := c.inRC.Read(sp.fn); err != nil {
		return 0, err
	}
	switch {
	case sp.err == unix.EINVAL && sp.n <= 0:
		c.noSplice = true
		return c.in.Read(c.mem[off : off+max])
	case sp.err != nil:
		return 0, sp.err
	case sp.n == 0:
		return 0, io.EOF
	}
	return int(sp.n), nil
}

// spliceCall is one splice between the file (at an offset) and a pipe
// whose fd the poller passes in, into the file or out of it; run by the
// poller when the pipe is ready, and made once per bridge, so no
// allocation per chunk.
type spliceCall struct {
	file     int
	off, max int64
	n        int64
	err      error
	fn       func(fd uintptr) bool
}

func (sp *spliceCall) init(file int, intoFile bool) {
	sp.file = file
	sp.fn = func(fd uintptr) bool {
		for {
			if intoFile {
				sp.n, sp.err = unix.Splice(int(fd), nil, sp.file, &sp.off, int(sp.max), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			} else {
				sp.n, sp.err = unix.Splice(sp.file, &sp.off, int(fd), nil, int(sp.max), unix.SPLICE_F_NONBLOCK)
			}
			if sp.err != unix.EINTR {
				return sp.err != unix.EAGAIN
			}
		}
	}
}

func (c *mmapChannel) consume(i int) error {
	out := c.store.Outs[i]
	defer out.Close()
	defer func() {
		c.gone[i].Store(true)
		poke(c.space)
	}()
	send, err := c.newSender(out)
	if err != nil {
		return err
	}
	var pos int64
	for {
		done := c.done.Load() // before length: the final length is seen
		length := c.length.Load()
		if pos < length {
			n, err := send.to(pos, min(length, pos+mmapMaxWrite)-pos)
			pos += int64(n)
			c.rpos[i].Store(pos)
			poke(c.space)
			if err != nil {
				if fdio.IsGone(err) {
					return nil
				}
				return fmt.Errorf("write to reader %d: %w", i, err)
			}
			continue
		}
		if done {
			return nil
		}
		select {
		case <-c.wake[i]:
		case <-c.stop:
			return nil
		}
	}
}

// mmapSender moves published bytes of the file into one reader's pipe.
// splice(2) from the file gives the pipe references to the page-cache
// pages themselves: no copy and no page fault in ipcflow, the consumer's
// read(2) is the only copy. That is safe because the stream only grows: a
// byte once published is never written again (the final truncate cuts only
// past the end). Where the file system cannot splice, write(2) from the
// mapping does the same with one copy more.
type mmapSender struct {
	out      *os.File
	rc       syscall.RawConn
	mem      []byte
	noSplice bool
	sp       spliceCall
}

func (c *mmapChannel) newSender(out *os.File) (*mmapSender, error) {
	return newMmapSender(out, c.fd, c.mem)
}

// newMmapSender sends bytes of the file fd, mapped at mem, into out.
func newMmapSender(out *os.File, fd int, mem []byte) (*mmapSender, error) {
	rc, err := out.SyscallConn()
	if err != nil {
		return nil, err
	}
	s := &mmapSender{out: out, rc: rc, mem: mem, noSplice: mmapNoSplice}
	s.sp.init(fd, false)
	return s, nil
}

// to sends up to max bytes from file offset off; it returns how many went.
func (s *mmapSender) to(off, max int64) (int, error) {
	if !s.noSplice {
		sp := &s.sp
		sp.off, sp.max = off, max
		if err := s.rc.Write(sp.fn); err != nil {
			return 0, err
		}
		switch {
		case sp.err == unix.EINVAL:
			s.noSplice = true
		case sp.err != nil:
			return 0, sp.err
		default:
			return int(sp.n), nil
		}
	}
	return s.out.Write(s.mem[off : off+max])
}

func (c *mmapChannel) Wait() error { return c.store.Wait() }

func (c *mmapChannel) Close() error {
	c.once.Do(func() {
		c.store.Closing()
		close(c.stop)
		if c.in != nil {
			c.in.Close()
		}
		for _, f := range c.store.Outs {
			f.Close()
		}
		c.store.Wait()
		unix.Munmap(c.mem)
		unix.Close(c.fd)
		c.closeUnhanded()
	})
	return nil
}

// DiscardRecording removes a path= recording that must not stay: its run
// failed to set up, so it recorded nothing, and left there it would make
// the next run fail ("already exists"). Only the file this channel made
// goes, never one put in its place.
func (c *mmapChannel) DiscardRecording() error {
	if !c.keep {
		return nil
	}
	return fileid.RemoveIfSame(c.path, c.id)
}

func (c *mmapChannel) Stats() Stats {
	return Stats{Bytes: c.length.Load(), Records: c.chunks.Load()}
}

// poke wakes whoever waits on ch without blocking: a wake-up already
// pending covers this one.
func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

var _ Recording = (*mmapChannel)(nil)
