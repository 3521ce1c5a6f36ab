// Package ring is a single-writer, multi-reader byte ring in shared
// memory, each reader with a cursor of its own, waiting by spinning and
// then on futexes (or on Go channels when every end is in this process).
// The shm edge keeps its stream in one; the layout and the handshake are
// below, for a native stage that maps the segment itself.
package ring

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/locks"
)

// One writer, up to
// MaxReaders readers, each reader with its own cursor: fan-out keeps the
// data once and the writer waits for the slowest reader still reading.
//
// Layout of the segment (all integers little-endian, native atomics):
//
//	offset  size  field
//	     0     8  magic "ipcflowR"
//	     8     4  version (1)
//	    12     4  readers: how many read cursors follow
//	    16     8  capacity: bytes in the data area
//	    24     4  layout: 0 a ring (the data area follows the header),
//	              1 linear (InitLinear: the data is a file elsewhere)
//	    64     8  wpos: bytes ever written (published by the writer)      } own
//	    72     4  wdone: 1 once the writer has finished (end of stream)  } line
//	    76     4  wdead: 1 when the writer ended without finishing       }
//	   128     4  dataSeq: futex word, "data available"                  } own
//	   132     4  dataWaiters: readers asleep (or about to be) on it     } line
//	   192     4  spaceSeq: futex word, "space available"                } own
//	   196     4  spaceWaiter: 1 while the writer sleeps (or is about to)} line
//	256+64i     8  rpos[i]: bytes reader i has consumed                  } one line
//	264+64i     4  gone[i]: 1 once reader i has stopped reading          } each
//	  4096     -  data: capacity bytes, byte k of the stream at k % capacity
//
// Cursors only grow; wpos - min(rpos of live readers) is the fill, never
// above capacity. A linear ring (layout 1, the mmap edge with a native
// end) keeps only this header in its segment: the stream is a file that
// holds all of it, byte k at offset k, never overwritten, and capacity is
// how far the writer may run ahead of the slowest reader (a window, not
// a buffer). Cursors, flags and the handshake are the same. Each cursor has a cache line of its own so that the
// writer's stores do not steal the readers' lines and back.
//
// The handshake, for one reader (several readers run the same protocol on
// their own rpos[i]; dataWaiters counts them):
//
//	writer                                  reader i
//	------                                  --------
//	wait while capacity - (wpos - min rpos) == 0:
//	  spin, then spaceWaiter=1, seq=spaceSeq,
//	  re-test, futex_wait(spaceSeq, seq)
//	copy bytes into data[wpos % cap ...]
//	wpos += n (store-release) ------------> sees wpos > rpos[i] while spinning,
//	if dataWaiters > 0:                     or: dataWaiters++, seq=dataSeq,
//	  dataSeq++, futex_wake(dataSeq, all)     re-test, futex_wait(dataSeq, seq)
//	                                        copy out data[rpos % cap ...]
//	sees more space while spinning, <------ rpos[i] += n (store-release)
//	or is woken:                            if spaceWaiter == 1:
//	                                          spaceSeq++, futex_wake(spaceSeq)
//	...
//	wdone = 1; dataSeq++; wake all -------> drains to wpos, then end of stream
//	                                        ...or stops early:
//	Reserve fails with ErrReadersGone <---- gone[i] = 1; spaceSeq++; wake
//	  once every reader is gone
//
// A waiter announces itself (the Waiters word) before re-testing its
// condition, and a waker publishes its cursor before reading the Waiters
// word; Go's atomics are sequentially consistent, so at least one of the two
// sees the other and no wake-up is lost. Sleeps are bounded (ringPoll) so a
// peer that died between publishing and waking costs a delay, not a hang.
// The spin before sleeping is what makes a small message's round trip fast:
// waking a sleeping thread on another CPU costs tens of microseconds. Every
// 64 turns the spinner yields its CPU, which the peer may be waiting for.
//
// wdead is set (before wdone) by whoever watches a writer that is a
// process of its own (ipcflow watches a native stage's end, see package
// native): the writer died, killed or exiting without Close, so its
// readers get an error after the bytes it had committed (native's
// ErrWriterDied), never a clean end of stream. A reader that dies is marked gone[i] the same way.
//
// When every end is a goroutine of one process (LocalWake: ipcflow's own
// bridges), the futex sleep and wake become a park on a Go channel and a
// poke of it, under the same Waiters words.

const (
	ringMagic   = 0x52776f6c66637069 // "ipcflowR" as little-endian bytes
	ringVersion = 1
	// Version is the layout's version, in the header at offset 8: a
	// native stage's client refuses a segment of another version.
	Version = ringVersion
	// HeaderSize is the size of the header before the data area.
	HeaderSize = 4096
	// MaxReaders is how many read cursors the header has room for.
	MaxReaders = (HeaderSize - 256) / 64

	offMagic       = 0
	offVersion     = 8
	offReaders     = 12
	offCapacity    = 16
	offLayout      = 24
	offWpos        = 64
	offWdone       = 72
	offWdead       = 76
	offDataSeq     = 128
	offDataWaiters = 132
	offSpaceSeq    = 192
	offSpaceWaiter = 196
	offReader0     = 256
	readerStride   = 64

	// ringSpin is how long a waiter spins before it sleeps on the futex.
	ringSpin = 20 * time.Microsecond
	// ringLocalSpin is the spin under LocalWake: the bridges share the
	// CPUs with the stages they serve, and parking a goroutine is cheap.
	ringLocalSpin = 2 * time.Microsecond
	// ringPoll bounds one futex sleep.
	ringPoll = 100 * time.Millisecond
)

// ErrReadersGone is what the ring's writer gets once every reader has
// stopped reading: the producer should see a closed pipe.
var ErrReadersGone = errors.New("every reader has gone")

// Ring is a mapped ring segment: the header and the data area.
type Ring struct {
	mem    []byte
	data   []byte
	cap    uint64
	linear bool       // InitLinear: data is the stream's file, byte k at data[k]
	n      int        // readers
	local  *localWake // set when every end is in this process
	spin   time.Duration
}

// localWake replaces the futex sleeps when every end of the ring is a
// goroutine of this process (ipcflow's bridges): a goroutine parked on a
// channel gives its P back at once, where one asleep in futex(2) holds it
// until sysmon notices (up to 10 ms on an idle runtime), which starves the
// other bridges and the poller on a small machine. The shared words keep
// their meaning; only the sleeping and waking differ.
type localWake struct {
	data  []chan struct{} // one per reader
	space chan struct{}
}

// LocalWake says every end of the ring lives in this process: waiters park
// their goroutine instead of their thread. Call it before any end is used.
func (r *Ring) LocalWake() {
	lw := &localWake{space: make(chan struct{}, 1), data: make([]chan struct{}, r.n)}
	for i := range lw.data {
		lw.data[i] = make(chan struct{}, 1)
	}
	r.local = lw
	r.spin = ringLocalSpin
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// wakeData wakes the readers that wait for data.
func (r *Ring) wakeData() {
	if r.local != nil {
		for _, ch := range r.local.data {
			poke(ch)
		}
		return
	}
	wakeAll(r.u32(offDataSeq))
}

// wakeSpace wakes the writer if it waits for space.
func (r *Ring) wakeSpace() {
	if r.local != nil {
		poke(r.local.space)
		return
	}
	wakeAll(r.u32(offSpaceSeq))
}

// Size is how many bytes a ring of capacity bytes needs.
func Size(capacity int64) int64 { return HeaderSize + capacity }

// Init formats mem (Size(capacity) bytes, zeroed, page-aligned:
// fresh from mmap) as an empty ring with readers cursors.
func Init(mem []byte, capacity int64, readers int) (*Ring, error) {
	if capacity <= 0 || int64(len(mem)) < Size(capacity) {
		return nil, fmt.Errorf("ring: %d bytes of memory for a capacity of %d", len(mem), capacity)
	}
	if readers < 1 || readers > MaxReaders {
		return nil, fmt.Errorf("ring: %d readers (1 to %d)", readers, MaxReaders)
	}
	r := &Ring{mem: mem, data: mem[HeaderSize : HeaderSize+capacity], cap: uint64(capacity), n: readers, spin: ringSpin}
	*r.u32(offVersion) = ringVersion
	*r.u32(offReaders) = uint32(readers)
	*r.u64(offCapacity) = uint64(capacity)
	atomic.StoreUint64(r.u64(offMagic), ringMagic) // last: the header is complete
	return r, nil
}

// InitLinear formats hdr (at least HeaderSize bytes, zeroed) as the
// header of a linear ring with readers cursors, whose writer runs at most
// window bytes ahead of its slowest reader; SetData gives it its data.
func InitLinear(hdr []byte, window int64, readers int) (*Ring, error) {
	if window <= 0 || len(hdr) < HeaderSize {
		return nil, fmt.Errorf("ring: %d bytes of header for a window of %d", len(hdr), window)
	}
	if readers < 1 || readers > MaxReaders {
		return nil, fmt.Errorf("ring: %d readers (1 to %d)", readers, MaxReaders)
	}
	r := &Ring{mem: hdr, cap: uint64(window), n: readers, spin: ringSpin, linear: true}
	*r.u32(offVersion) = ringVersion
	*r.u32(offReaders) = uint32(readers)
	*r.u64(offCapacity) = uint64(window)
	*r.u32(offLayout) = 1
	atomic.StoreUint64(r.u64(offMagic), ringMagic)
	return r, nil
}

// Linear reports whether the ring is linear (InitLinear).
func (r *Ring) Linear() bool { return r.linear }

// SetData gives a linear ring the mapping of its stream's file: byte k of
// the stream is data[k]. The writer's spans stop at len(data).
func (r *Ring) SetData(data []byte) { r.data = data }

// WriterPos is how many bytes the writer has published.
func (r *Ring) WriterPos() int64 { return int64(atomic.LoadUint64(r.u64(offWpos))) }

// Attach reads the header of a ring that Init formatted (in another
// process, or through another mapping).
func Attach(mem []byte) (*Ring, error) {
	if len(mem) < HeaderSize {
		return nil, fmt.Errorf("ring: segment of %d bytes is smaller than the header", len(mem))
	}
	r := &Ring{mem: mem, spin: ringSpin}
	if atomic.LoadUint64(r.u64(offMagic)) != ringMagic {
		return nil, errors.New("ring: bad magic: not an ipcflow ring")
	}
	if v := *r.u32(offVersion); v != ringVersion {
		return nil, fmt.Errorf("ring: version %d, want %d", v, ringVersion)
	}
	r.cap = *r.u64(offCapacity)
	r.n = int(*r.u32(offReaders))
	r.linear = *r.u32(offLayout) == 1
	if r.n < 1 || r.n > MaxReaders || r.cap == 0 || !r.linear && uint64(len(mem))-HeaderSize < r.cap {
		return nil, errors.New("ring: header does not match the segment")
	}
	if !r.linear {
		r.data = mem[HeaderSize : HeaderSize+r.cap]
	}
	return r, nil
}

func (r *Ring) u64(off int) *uint64 { return (*uint64)(unsafe.Pointer(&r.mem[off])) }
func (r *Ring) u32(off int) *uint32 { return (*uint32)(unsafe.Pointer(&r.mem[off])) }

// Capacity is the size of the data area.
func (r *Ring) Capacity() int64 { return int64(r.cap) }

// Readers is how many read cursors the ring has.
func (r *Ring) Readers() int { return r.n }

// Writer returns the ring's writer. There must be one only.
func (r *Ring) Writer() *Writer {
	return &Writer{r: r, wpos: r.u64(offWpos), seq: r.u32(offSpaceSeq), waiter: r.u32(offSpaceWaiter)}
}

// Reader returns reader i's end (0 <= i < Readers()).
func (r *Ring) Reader(i int) *Reader {
	base := offReader0 + i*readerStride
	rd := &Reader{r: r, rpos: r.u64(base), gone: r.u32(base + 8)}
	if r.local != nil {
		rd.wake = r.local.data[i]
	}
	return rd
}

// Shutdown ends the ring for both sides: end of stream for the readers,
// every reader gone for the writer, and wakes whoever sleeps. Used on
// teardown, so that no bridge stays blocked.
func (r *Ring) Shutdown() {
	atomic.StoreUint32(r.u32(offWdone), 1)
	for i := 0; i < r.n; i++ {
		atomic.StoreUint32(r.u32(offReader0+i*readerStride+8), 1)
	}
	r.wakeData()
	r.wakeSpace()
}

// MarkWriterDead says the writer ended without Close: its readers drain
// what it committed, then get ErrWriterDied. It does nothing once the
// writer has closed. Called by whoever watches the writer's process.
func (r *Ring) MarkWriterDead() {
	if atomic.LoadUint32(r.u32(offWdone)) != 0 {
		return
	}
	atomic.StoreUint32(r.u32(offWdead), 1)
	atomic.StoreUint32(r.u32(offWdone), 1)
	r.wakeData()
}

// WriterDied reports whether MarkWriterDead was called.
func (r *Ring) WriterDied() bool { return atomic.LoadUint32(r.u32(offWdead)) != 0 }

// WriterDone reports whether the writer has finished (closed or died).
func (r *Ring) WriterDone() bool { return atomic.LoadUint32(r.u32(offWdone)) != 0 }

// MarkReaderGone says reader i stopped reading (its process ended): the
// writer no longer waits for it.
func (r *Ring) MarkReaderGone(i int) {
	atomic.StoreUint32(r.u32(offReader0+i*readerStride+8), 1)
	r.wakeSpace()
}

// ReaderGone reports whether reader i has stopped reading.
func (r *Ring) ReaderGone(i int) bool {
	return atomic.LoadUint32(r.u32(offReader0+i*readerStride+8)) != 0
}

// yield gives the CPU away for a moment while spinning: the peer may be
// waiting for this very CPU (two CPUs, busy with other work). A goroutine
// (LocalWake) yields to the Go scheduler, a thread to the kernel's.
func yield(local bool) {
	if local {
		runtime.Gosched()
		return
	}
	unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
}

func wakeAll(seq *uint32) {
	atomic.AddUint32(seq, 1)
	locks.FutexWake(seq, 1<<30)
}

// Writer is the writing end of a ring.
type Writer struct {
	r      *Ring
	wpos   *uint64
	seq    *uint32
	waiter *uint32
	pos    uint64 // == *wpos: only this writer stores it
}

// free returns the free space; ok is false when every reader has gone.
func (w *Writer) free() (uint64, bool) {
	r := w.r
	lo, live := w.pos, false
	for i := 0; i < r.n; i++ {
		base := offReader0 + i*readerStride
		if atomic.LoadUint32(r.u32(base+8)) != 0 {
			continue
		}
		p := atomic.LoadUint64(r.u64(base))
		if !live || p < lo {
			lo = p
		}
		live = true
	}
	return r.cap - (w.pos - lo), live
}

// Reserve waits for free space and returns it as one contiguous slice of
// the ring (at most up to the end of the data area): the caller fills a
// prefix of it (read(2) straight into it) and calls Commit.
func (w *Writer) Reserve() ([]byte, error) {
	free, live := w.free()
	if free == 0 && live {
		deadline := time.Now().Add(w.r.spin)
		for i := 0; free == 0 && live; i++ {
			if i&63 == 63 {
				if time.Now().After(deadline) {
					free, live = w.sleep()
					break
				}
				yield(w.r.local != nil)
			}
			free, live = w.free()
		}
	}
	if !live {
		return nil, ErrReadersGone
	}
	if w.r.linear {
		end := min(w.pos+free, uint64(len(w.r.data)))
		return w.r.data[w.pos:end], nil
	}
	off := w.pos % w.r.cap
	n := min(free, w.r.cap-off)
	return w.r.data[off : off+n], nil
}

// sleep waits on the futex until there is space or no reader.
func (w *Writer) sleep() (uint64, bool) {
	for {
		atomic.StoreUint32(w.waiter, 1)
		seq := atomic.LoadUint32(w.seq)
		if free, live := w.free(); free > 0 || !live {
			atomic.StoreUint32(w.waiter, 0)
			return free, live
		}
		if w.r.local != nil {
			<-w.r.local.space
			continue
		}
		locks.FutexWait(w.seq, seq, ringPoll)
	}
}

// Commit publishes n bytes written into the slice Reserve returned.
func (w *Writer) Commit(n int) {
	w.pos += uint64(n)
	atomic.StoreUint64(w.wpos, w.pos)
	if atomic.LoadUint32(w.r.u32(offDataWaiters)) != 0 {
		w.r.wakeData()
	}
}

// Write copies p into the ring, waiting for space as needed.
func (w *Writer) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		span, err := w.Reserve()
		if err != nil {
			return done, err
		}
		n := copy(span, p[done:])
		w.Commit(n)
		done += n
	}
	return done, nil
}

// Close marks the end of the stream: readers drain what is left, then get
// io.EOF.
func (w *Writer) Close() error {
	atomic.StoreUint32(w.r.u32(offWdone), 1)
	w.r.wakeData()
	return nil
}

// Reader is one reading end of a ring.
type Reader struct {
	r    *Ring
	rpos *uint64
	gone *uint32
	pos  uint64        // == *rpos: only this reader stores it
	wake chan struct{} // LocalWake: this reader's channel
}

// avail returns how many bytes are ready, and whether the writer is done.
func (rd *Reader) avail() (uint64, bool) {
	done := atomic.LoadUint32(rd.r.u32(offWdone)) != 0 // before wpos: a final Commit is seen
	return atomic.LoadUint64(rd.r.u64(offWpos)) - rd.pos, done
}

// Peek waits for data and returns it as one contiguous slice of the ring,
// valid until Release; io.EOF once the writer has closed and all was read,
// or once this reader was closed.
func (rd *Reader) Peek() ([]byte, error) {
	n, done := rd.avail()
	if n == 0 && !done {
		deadline := time.Now().Add(rd.r.spin)
		for i := 0; n == 0 && !done; i++ {
			if i&63 == 63 {
				if time.Now().After(deadline) {
					n, done = rd.sleep()
					break
				}
				yield(rd.wake != nil)
			}
			n, done = rd.avail()
		}
	}
	if n == 0 || atomic.LoadUint32(rd.gone) != 0 {
		return nil, io.EOF
	}
	if rd.r.linear {
		return rd.r.data[rd.pos : rd.pos+n], nil
	}
	off := rd.pos % rd.r.cap
	n = min(n, rd.r.cap-off)
	return rd.r.data[off : off+n], nil
}

func (rd *Reader) sleep() (uint64, bool) {
	waiters := rd.r.u32(offDataWaiters)
	seqw := rd.r.u32(offDataSeq)
	atomic.AddUint32(waiters, 1)
	defer atomic.AddUint32(waiters, ^uint32(0))
	for {
		seq := atomic.LoadUint32(seqw)
		if n, done := rd.avail(); n > 0 || done {
			return n, done
		}
		if rd.wake != nil {
			<-rd.wake
			continue
		}
		locks.FutexWait(seqw, seq, ringPoll)
	}
}

// Release gives back the first n bytes of what Peek returned.
func (rd *Reader) Release(n int) {
	rd.pos += uint64(n)
	atomic.StoreUint64(rd.rpos, rd.pos)
	if atomic.LoadUint32(rd.r.u32(offSpaceWaiter)) != 0 {
		rd.r.wakeSpace()
	}
}

// Read copies data out of the ring into p.
func (rd *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	span, err := rd.Peek()
	if err != nil {
		return 0, err
	}
	n := copy(p, span)
	rd.Release(n)
	return n, nil
}

// Close says this reader stops reading: the writer no longer waits for it.
func (rd *Reader) Close() error {
	atomic.StoreUint32(rd.gone, 1)
	rd.r.wakeSpace()
	return nil
}

// Fill is how many bytes the ring holds now: written and not yet consumed
// by the slowest reader still reading (0 once none is).
func (r *Ring) Fill() int64 {
	w := atomic.LoadUint64(r.u64(offWpos))
	low, live := w, false
	for i := 0; i < r.n; i++ {
		base := offReader0 + i*readerStride
		if atomic.LoadUint32(r.u32(base+8)) != 0 {
			continue
		}
		if p := atomic.LoadUint64(r.u64(base)); !live || p < low {
			low, live = p, true
		}
	}
	if !live || low > w {
		return 0
	}
	return int64(w - low)
}
