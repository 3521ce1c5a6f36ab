package channels

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Native ends (SPEC 12): an end of an mq, shm or mmap edge that a stage
// marked native holds itself. No bridge runs for it; the channel hands
// exec the descriptors that stage inherits instead of a pipe, and package
// native describes them to the stage (IPCFLOW_PORT_<PORT>).
//
// Each native end gets a liveness pipe: the stage inherits its write end
// and ipcflow keeps the read end, watched by a goroutine. The kernel
// closes the stage's copy however the stage ends, SIGKILL included, so
// the read end's end of file is the moment the end is gone: the channel
// then marks it so in the object (a ring's writer dead or reader gone,
// the same in an mq control page) and wakes the peer, which sees an error
// or the end of the stream instead of waiting for good. An end that
// closed its port cleanly has set its flags already, and the watcher's
// mark changes nothing.

// The parts of a native end, for NativeFile.
const (
	NativeObject  = iota // the object: shm segment, mq descriptor, mmap file
	NativeControl        // mq and mmap: the control page
	NativeLife           // the stage's end of the liveness pipe
	nativeParts
)

// WriterEnd is the writer's index among a channel's ends; readers are 0 on.
const WriterEnd = -1

// NativeEnds is a Channel with ends held by native stages.
type NativeEnds interface {
	Channel
	// NativeFile hands over part of end (WriterEnd, or reader i): exec
	// puts it in the native stage's fd table, then closes it, as it does
	// with Writer and Reader. Nil if end is not native or has no such part.
	NativeFile(end, part int) *os.File
}

type nativeEnd struct {
	files  [nativeParts]*os.File
	handed [nativeParts]bool
	life   *os.File // ipcflow's end of the liveness pipe
}

// natives are a channel's native ends and their watchers.
type natives struct {
	mu   sync.Mutex
	ends map[int]*nativeEnd
	wg   sync.WaitGroup
}

// add makes end a native end with the files obj and ctl (ctl may be nil),
// which it now owns, and starts watching it: gone runs once the stage
// holding it has let go of it (exited, or was killed).
func (n *natives) add(end int, obj, ctl *os.File, gone func()) error {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		obj.Close()
		if ctl != nil {
			ctl.Close()
		}
		return fmt.Errorf("liveness pipe: %w", err)
	}
	unix.SetNonblock(p[0], true)
	life := os.NewFile(uintptr(p[0]), "|life")
	e := &nativeEnd{life: life}
	e.files[NativeObject], e.files[NativeControl] = obj, ctl
	e.files[NativeLife] = os.NewFile(uintptr(p[1]), "|life")
	n.mu.Lock()
	if n.ends == nil {
		n.ends = map[int]*nativeEnd{}
	}
	n.ends[end] = e
	n.mu.Unlock()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		var b [64]byte
		for {
			_, err := life.Read(b[:])
			if err == io.EOF {
				gone()
				return
			}
			if err != nil {
				return // closed by Close
			}
		}
	}()
	return nil
}

// has reports whether end is native.
func (n *natives) has(end int) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.ends[end]
	return ok
}

func (n *natives) NativeFile(end, part int) *os.File {
	n.mu.Lock()
	defer n.mu.Unlock()
	e, ok := n.ends[end]
	if !ok || part < 0 || part >= nativeParts || e.files[part] == nil {
		return nil
	}
	e.handed[part] = true
	return e.files[part]
}

// closeStages closes what exec never took: a stage that will not start.
// Its liveness pipe's end then closes, and the watcher marks it gone.
func (n *natives) closeStages() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, e := range n.ends {
		for i, f := range e.files {
			if f != nil && !e.handed[i] {
				f.Close()
				e.handed[i] = true
			}
		}
	}
}

// stop ends the watchers and waits for them: after it, nothing of theirs
// touches the channel's mapping.
func (n *natives) stop() {
	n.closeStages()
	n.mu.Lock()
	for _, e := range n.ends {
		e.life.Close()
	}
	n.mu.Unlock()
	n.wg.Wait()
}

// dupFile is a close-on-exec copy of fd as a file.
func dupFile(fd int, name string) (*os.File, error) {
	d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(d), name), nil
}

// nativeReader reports whether reader i of s is native.
func (s Spec) nativeReader(i int) bool { return i < len(s.NativeReaders) && s.NativeReaders[i] }

// HasNative reports whether any end of s is native.
func (s Spec) HasNative() bool {
	if s.NativeWriter {
		return true
	}
	for _, r := range s.NativeReaders {
		if r {
			return true
		}
	}
	return false
}

// errNativeWriterDied is what a bridge reading from a native writer says
// when the writer ended without closing the stream: its reader got what
// the writer had written, and an end of file that is no end of stream.
var errNativeWriterDied = errors.New("the native writer ended without closing the stream (killed, or exited early)")
