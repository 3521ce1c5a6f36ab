package channels

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/bridge"
	"github.com/ipcflow/ipcflow/fdio"
	"github.com/ipcflow/ipcflow/fileid"
	"github.com/ipcflow/ipcflow/ring"
)

// The shm edge type: a ring (package ring) in a POSIX shared memory object,
// /dev/shm/<prefix><id>. The producer writes a pipe; a bridge reads that
// pipe straight into the ring's free space; one bridge per reader writes
// the ring's data straight into that reader's pipe. Both bridges live in
// ipcflow, so the name is unlinked as soon as the segment is mapped: a
// SIGKILL of ipcflow leaves nothing behind.

// DefaultShmSize is the ring's capacity when the edge has no size option.
const DefaultShmSize = 1 << 20

func init() {
	register(Type{Name: "shm", Caps: Caps{FanOut: true, Bridged: true, Native: true}, Check: checkShm, Open: openShm})
}

func checkShm(o Options) error {
	if o.Size < 0 {
		return fmt.Errorf("shm size %d is negative", o.Size)
	}
	if o.Size > 0 && o.Size < 4096 {
		return fmt.Errorf("shm size %d is below one page (4096)", o.Size)
	}
	return nil
}

// ShmCapacity is the data capacity of the ring an shm edge of size bytes
// gets (0: the default): rounded up to a page.
func ShmCapacity(size int64) int64 {
	if size == 0 {
		size = DefaultShmSize
	}
	pg := int64(os.Getpagesize())
	return (size + pg - 1) / pg * pg
}

// ShmPath is where the segment of edge id lives while it is being set up.
func ShmPath(env Env, id string) string { return "/dev/shm/" + env.Prefix + id }

// CreateShmRing creates, sizes and maps a new segment at path (exclusively,
// mode 0600) and formats it as a ring. The caller unlinks path once every
// party has mapped it. fallocate reserves the memory now: a full /dev/shm
// is this error, not a SIGBUS in the middle of the stream.
func CreateShmRing(path string, capacity int64, readers int) (*ring.Ring, []byte, error) {
	pg := int64(os.Getpagesize())
	capacity = (capacity + pg - 1) / pg * pg
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("create shm segment %s: %w", path, err)
	}
	defer unix.Close(fd)
	size := ring.Size(capacity)
	if err := unix.Fallocate(fd, 0, 0, size); err != nil {
		unix.Unlink(path)
		if errors.Is(err, unix.ENOSPC) {
			return nil, nil, fmt.Errorf("shm segment %s: /dev/shm has no room for %d bytes: %w", path, size, err)
		}
		return nil, nil, fmt.Errorf("allocate shm segment %s: %w", path, err)
	}
	mem, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Unlink(path)
		return nil, nil, fmt.Errorf("map shm segment %s: %w", path, err)
	}
	r, err := ring.Init(mem, capacity, readers)
	if err != nil {
		unix.Munmap(mem)
		unix.Unlink(path)
		return nil, nil, err
	}
	return r, mem, nil
}

type shmChannel struct {
	ends
	natives
	store  bridge.Store
	ring   *ring.Ring
	mem    []byte
	in     *os.File // ipcflow's end of the producer's pipe
	bytes  atomic.Int64
	chunks atomic.Int64
	once   sync.Once

	// mapped guards reads of the ring's write cursor by Stats against
	// Close's munmap; written is the cursor as Close left it. A native
	// writer's bytes pass no bridge: the cursor counts them.
	mapped  sync.Mutex
	unmap   bool
	written int64
}

func openShm(env Env, spec Spec) (Channel, error) {
	size := spec.Options.Size
	if size == 0 {
		size = DefaultShmSize
	}
	path := ShmPath(env, spec.ID)
	if err := env.Record(KindShm, path); err != nil {
		return nil, fmt.Errorf("edge %s: %w", spec.ID, err)
	}
	ring, mem, err := CreateShmRing(path, size, spec.Readers)
	if err != nil {
		return nil, fmt.Errorf("edge %s: %w", spec.ID, err)
	}
	if env.Made != nil {
		// Until the unlink below, a crash leaves the name: clean then
		// removes it only while it is this segment.
		if st, ok, err := fileid.StatNoFollow(path); err == nil && ok {
			env.Made(path, fileid.IdentityOf(&st))
		}
	}
	// A native end maps the segment through a descriptor of its own,
	// opened before the name goes.
	seg := -1
	if spec.HasNative() {
		if seg, err = unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0); err != nil {
			unix.Munmap(mem)
			unix.Unlink(path)
			return nil, fmt.Errorf("edge %s: open shm segment %s for a native stage: %w", spec.ID, path, err)
		}
		defer unix.Close(seg)
	}
	// Every end of the ring is open or mapped: the name can go now.
	if err := unix.Unlink(path); err != nil {
		unix.Munmap(mem)
		return nil, fmt.Errorf("edge %s: unlink shm segment %s: %w", spec.ID, path, err)
	}
	if !spec.HasNative() {
		ring.LocalWake() // both bridges are goroutines here
	}
	c := &shmChannel{ring: ring, mem: mem, store: bridge.Store{Group: bridge.Group{Edge: spec.ID}}}
	if err := c.addNatives(spec, seg); err != nil {
		c.Close()
		return nil, fmt.Errorf("edge %s: %w", spec.ID, err)
	}
	var w *os.File
	produce := c.produce
	if spec.NativeWriter {
		produce = nil
	} else {
		var in *os.File
		if w, in, err = bridge.Pipe(true); err != nil {
			c.Close()
			return nil, fmt.Errorf("edge %s: %w", spec.ID, err)
		}
		c.in = in
	}
	rs, err := c.store.StartSome(spec.Readers, produce, c.consume, spec.nativeReader)
	c.ends = newEnds(w, rs)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("edge %s: %w", spec.ID, err)
	}
	return c, nil
}

// addNatives makes the native ends of spec, each with a copy of the
// segment's descriptor seg: the writer, when dead, is marked so in the
// ring (its readers get an error after its last bytes), a reader gone.
func (c *shmChannel) addNatives(spec Spec, seg int) error {
	add := func(end int, gone func()) error {
		f, err := dupFile(seg, "shm")
		if err != nil {
			return fmt.Errorf("shm segment for a native stage: %w", err)
		}
		return c.natives.add(end, f, nil, gone)
	}
	if spec.NativeWriter {
		if err := add(WriterEnd, c.ring.MarkWriterDead); err != nil {
			return err
		}
	}
	for i := range spec.Readers {
		if spec.nativeReader(i) {
			if err := add(i, func() { c.ring.MarkReaderGone(i) }); err != nil {
				return err
			}
		}
	}
	return nil
}

// produce moves the producer's pipe into the ring: read(2) lands in the
// ring's memory, no copy in between.
func (c *shmChannel) produce() error {
	w := c.ring.Writer()
	defer c.in.Close() // every reader gone: the producer's next write gets EPIPE
	defer w.Close()
	for {
		span, err := w.Reserve()
		if err != nil {
			return nil // ErrReadersGone
		}
		n, err := c.in.Read(span)
		if n > 0 {
			w.Commit(n)
			c.bytes.Add(int64(n))
			c.chunks.Add(1)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read from producer: %w", err)
		}
	}
}

// consume moves the ring into reader i's pipe: write(2) from the ring's
// memory. A chunk is at most a quarter of the ring, so the writer gets room
// back while a large write is still going.
func (c *shmChannel) consume(i int) error {
	rd := c.ring.Reader(i)
	out := c.store.Outs[i]
	defer out.Close()
	defer rd.Close()
	limit := max(int(c.ring.Capacity()/4), 4096)
	for {
		span, err := rd.Peek()
		if err != nil {
			if c.ring.WriterDied() {
				return errNativeWriterDied
			}
			return nil // io.EOF: the producer finished and all was delivered
		}
		if len(span) > limit {
			span = span[:limit]
		}
		n, err := out.Write(span)
		rd.Release(n)
		if err != nil {
			if fdio.IsGone(err) {
				return nil // the reader stopped early, as head does
			}
			return fmt.Errorf("write to reader %d: %w", i, err)
		}
	}
}

func (c *shmChannel) Wait() error { return c.store.Wait() }

func (c *shmChannel) Close() error {
	c.once.Do(func() {
		c.store.Closing()
		c.ring.Shutdown()
		if c.in != nil {
			c.in.Close()
		}
		for _, f := range c.store.Outs {
			f.Close()
		}
		c.store.Wait()   // nobody touches the mapping after this...
		c.natives.stop() // ...nor a watcher after this
		c.mapped.Lock()
		c.written, c.unmap = c.ring.WriterPos(), true
		unix.Munmap(c.mem)
		c.mapped.Unlock()
		c.closeUnhanded()
	})
	return nil
}

// Stats are the bridge's counts; the bytes, where the writer is native,
// the ring's write cursor (a native end's commits are not counted).
func (c *shmChannel) Stats() Stats {
	c.mapped.Lock()
	w := c.written
	if !c.unmap {
		w = c.ring.WriterPos()
	}
	c.mapped.Unlock()
	return Stats{Bytes: max(c.bytes.Load(), w), Records: c.chunks.Load()}
}

// Fill is how much the ring holds and its size (Filler). Callers stop
// asking before Close (the ring is unmapped there).
func (c *shmChannel) Fill() (used, capacity int64) { return c.ring.Fill(), c.ring.Capacity() }
