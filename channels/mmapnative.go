package channels

import (
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

// An mmap edge with a native end (Spec.HasNative): the same file as
// openMmap's, but what the writer has published and where each reader
// is live in a linear ring's header (package ring, InitLinear) in a
// memfd, which the native ends map too: the writer publishes with
// Commit, the readers follow the published length and release what they
// have read, and the writer runs at most mmapWindow bytes ahead of the
// slowest reader, with the ring's waits and flags. A plain end is bridged
// as openMmap bridges it: read(2) from the producer's pipe into the
// mapping, splice(2) from the file into a reader's pipe.
//
// The file is the stream, exactly: a writer that closes truncates it to
// its length, and ipcflow does the same when the writer's process ends
// (a killed writer leaves the steps it had allocated beyond its end).

type mmapNative struct {
	ends
	natives
	store  bridge.Store
	file   mmapFile
	ctlFd  int
	ctlMem []byte
	ring   *ring.Ring
	in     *os.File
	step   int64
	bytes  atomic.Int64
	chunks atomic.Int64
	once   sync.Once
	// A native writer's bytes are its published length (the ring's write
	// cursor); published keeps it once the ring is unmapped.
	nativeWriter bool
	mapped       sync.Mutex
	published    int64
	unmapped     bool
}

func openMmapNative(env Env, spec Spec) (Channel, error) {
	f, err := createMmapFile(env, spec)
	if err != nil {
		return nil, err
	}
	c := &mmapNative{file: f, ctlFd: -1, nativeWriter: spec.NativeWriter, step: max(spec.Options.Size, mmapStep), store: bridge.Store{Group: bridge.Group{Edge: spec.ID}}}
	fail := func(err error) (Channel, error) {
		c.Close()
		if f.keep {
			fileid.RemoveIfSame(f.path, f.id) // a recording of nothing
		}
		return nil, fmt.Errorf("edge %s: %w", spec.ID, err)
	}
	if c.ctlFd, err = unix.MemfdCreate("ipcflow-mmap-ctl", unix.MFD_CLOEXEC); err != nil {
		return fail(fmt.Errorf("memfd for the mmap edge's header: %w", err))
	}
	if err := unix.Ftruncate(c.ctlFd, ring.HeaderSize); err != nil {
		return fail(fmt.Errorf("size the mmap edge's header: %w", err))
	}
	if c.ctlMem, err = unix.Mmap(c.ctlFd, 0, ring.HeaderSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return fail(fmt.Errorf("map the mmap edge's header: %w", err))
	}
	if c.ring, err = ring.InitLinear(c.ctlMem, mmapWindow, spec.Readers); err != nil {
		return fail(err)
	}
	c.ring.SetData(f.mem)
	if err := c.addNatives(spec); err != nil {
		return fail(err)
	}
	var w *os.File
	produce := c.produce
	if spec.NativeWriter {
		produce = nil
	} else if w, c.in, err = bridge.Pipe(true); err != nil {
		return fail(err)
	}
	rs, err := c.store.StartSome(spec.Readers, produce, c.consume, spec.nativeReader)
	c.ends = newEnds(w, rs)
	if err != nil {
		return fail(err)
	}
	return c, nil
}

// addNatives makes the native ends: each a copy of the file's descriptor
// and of the header's. A writer's end truncates the file to its length
// and marks it dead if it had not closed; a reader's is marked gone.
func (c *mmapNative) addNatives(spec Spec) error {
	add := func(end int, gone func()) error {
		obj, err := dupFile(c.file.fd, "mmap")
		if err != nil {
			return err
		}
		ctl, err := dupFile(c.ctlFd, "mmap-ctl")
		if err != nil {
			obj.Close()
			return err
		}
		return c.natives.add(end, obj, ctl, gone)
	}
	if spec.NativeWriter {
		err := add(WriterEnd, func() {
			unix.Ftruncate(c.file.fd, c.ring.WriterPos())
			c.ring.MarkWriterDead()
		})
		if err != nil {
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

// produce moves the producer's pipe into the file: read(2) into the
// mapping, the file grown ahead of it in steps.
func (c *mmapNative) produce() (err error) {
	w := c.ring.Writer()
	var length, size int64
	defer func() {
		c.in.Close()
		if terr := unix.Ftruncate(c.file.fd, length); terr != nil && err == nil {
			err = fmt.Errorf("truncate mmap file %s: %w", c.file.path, terr)
		}
		w.Close()
	}()
	for {
		span, err := w.Reserve()
		if err != nil {
			return nil // every reader gone: the producer gets EPIPE
		}
		if length == size {
			if size, err = growMmapFile(c.file.fd, c.file.path, size, &c.step); err != nil {
				return err
			}
		}
		span = span[:min(int64(len(span)), size-length)]
		n, rerr := c.in.Read(span)
		if n > 0 {
			w.Commit(n)
			length += int64(n)
			c.bytes.Add(int64(n))
			c.chunks.Add(1)
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("read from producer: %w", rerr)
		}
	}
}

// consume moves the published stream into reader i's pipe, from the file
// (splice) at the reader's cursor.
func (c *mmapNative) consume(i int) error {
	rd := c.ring.Reader(i)
	out := c.store.Outs[i]
	defer out.Close()
	defer rd.Close()
	send, err := newMmapSender(out, c.file.fd, c.file.mem)
	if err != nil {
		return err
	}
	var pos int64
	for {
		span, err := rd.Peek()
		if err != nil {
			if c.ring.WriterDied() {
				return errNativeWriterDied
			}
			return nil
		}
		n, err := send.to(pos, min(int64(len(span)), mmapMaxWrite))
		pos += int64(n)
		rd.Release(n)
		if err != nil {
			if fdio.IsGone(err) {
				return nil
			}
			return fmt.Errorf("write to reader %d: %w", i, err)
		}
	}
}

func (c *mmapNative) Wait() error { return c.store.Wait() }

func (c *mmapNative) Close() error {
	c.once.Do(func() {
		c.store.Closing()
		if c.ring != nil {
			c.ring.Shutdown()
		}
		if c.in != nil {
			c.in.Close()
		}
		for _, f := range c.store.Outs {
			if f != nil {
				f.Close()
			}
		}
		c.store.Wait()
		c.natives.stop()
		c.mapped.Lock()
		if c.ring != nil {
			c.published = c.ring.WriterPos()
		}
		c.unmapped = true
		if c.ctlMem != nil {
			unix.Munmap(c.ctlMem)
		}
		c.mapped.Unlock()
		if c.ctlFd >= 0 {
			unix.Close(c.ctlFd)
		}
		unix.Munmap(c.file.mem)
		unix.Close(c.file.fd)
		c.closeUnhanded()
	})
	return nil
}

// DiscardRecording removes a path= recording of a run that failed to set
// up (mmapChannel.DiscardRecording).
func (c *mmapNative) DiscardRecording() error {
	if !c.file.keep {
		return nil
	}
	return fileid.RemoveIfSame(c.file.path, c.file.id)
}

func (c *mmapNative) Stats() Stats {
	if !c.nativeWriter {
		return Stats{Bytes: c.bytes.Load(), Records: c.chunks.Load()}
	}
	c.mapped.Lock()
	defer c.mapped.Unlock()
	if !c.unmapped && c.ring != nil {
		c.published = c.ring.WriterPos()
	}
	return Stats{Bytes: c.published}
}

var _ Recording = (*mmapNative)(nil)
