// Package bridge runs the goroutines of ipcflow that carry an edge's
// bytes between the plain pipes its stages hold and a kernel object that
// is no fd (a message queue, a ring, a mapped file) or an fd that needs
// care (a socket): the pipes between a stage and its bridge, the
// bookkeeping of a channel's bridges, and the mq edge's bridge with its
// message framing. It knows nothing of the Channel interface: the edge
// types in package channels build on it.
package bridge

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/budget"
)

// PipeSize is the buffer of a bridge's pipe: larger than the default
// 64 KiB so the stage and the bridge wake each other less often, but not
// 1 MiB: every bridged edge has two such pipes, charged to the user's pipe
// budget (package budget: 64 MiB before new pipes shrink to 8 KiB), and 256 KiB
// moved as fast as 1 MiB here. If the budget refuses, the pipe keeps the
// kernel's default.
const PipeSize = 256 << 10

// Pipe makes the pipe between a stage and a bridge. The stage's end
// stays blocking (ordinary tools expect that); ipcflow's end is
// non-blocking, so the bridge goroutine waits in Go's poller and closing the
// file wakes it (a blocking read(2) would not notice a close). ourRead says
// which end is ipcflow's.
func Pipe(ourRead bool) (stage, ours *os.File, err error) {
	stage, fd, err := RawPipe(ourRead)
	if err != nil {
		return nil, nil, err
	}
	return stage, os.NewFile(uintptr(fd), "|bridge"), nil
}

// RawPipe is Pipe for a bridge that waits in poll(2) itself:
// ipcflow's end is a plain non-blocking fd, kept out of Go's poller.
func RawPipe(ourRead bool) (stage *os.File, ours int, err error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, -1, fmt.Errorf("pipe: %w", err)
	}
	size := min(int64(PipeSize), budget.PipeMaxSize())
	unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, int(size)) // best effort: the default works too
	stageFd, ourFd := fds[1], fds[0]
	if !ourRead {
		stageFd, ourFd = fds[0], fds[1]
	}
	if err := unix.SetNonblock(ourFd, true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, -1, fmt.Errorf("pipe: %w", err)
	}
	return os.NewFile(uintptr(stageFd), "|stage"), ourFd, nil
}

// Group runs a channel's bridge goroutines and keeps the first error.
type Group struct {
	Edge string // the edge's id, which the error names
	// closing is set by Close before it closes the bridges' files: the
	// errors that follow (a closed file) are teardown, not failures.
	closing atomic.Bool
	wg      sync.WaitGroup
	mu      sync.Mutex
	err     error
}

// Go runs f as one of the group's bridges.
func (b *Group) Go(f func() error) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		if err := f(); err != nil && !b.closing.Load() {
			b.mu.Lock()
			if b.err == nil {
				b.err = fmt.Errorf("edge %s: %w", b.Edge, err)
			}
			b.mu.Unlock()
		}
	}()
}

// Closing says the channel's Close has begun: from now on a bridge's
// error is teardown, not a failure.
func (b *Group) Closing() { b.closing.Store(true) }

// Wait waits for every bridge of the group and returns the first error.
func (b *Group) Wait() error {
	b.wg.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// readerPipes makes the consumer-side pipes of a channel with n readers:
// stage[i] is reader i's end for exec, ours[i] the end its bridge writes.
// On error it closes what it made.
func readerPipes(n int) (stage, ours []*os.File, err error) {
	for range n {
		r, out, err := Pipe(false)
		if err != nil {
			for i := range stage {
				stage[i].Close()
				ours[i].Close()
			}
			return nil, nil, err
		}
		stage, ours = append(stage, r), append(ours, out)
	}
	return stage, ours, nil
}

// Store is the bridges of a channel that keeps the stream in a store of
// its own (the shm ring, the mmap file), and ipcflow's ends of the
// readers' pipes (Outs), which the consumers' bridges fill from the store.
type Store struct {
	Group
	Outs []*os.File
}

// Start makes a pipe for each of n readers and starts the bridges:
// produce fills the store, consume(i) empties it into Outs[i]. It returns
// the readers' ends of the pipes, for the stages.
func (s *Store) Start(n int, produce func() error, consume func(i int) error) ([]*os.File, error) {
	return s.StartSome(n, produce, consume, nil)
}

// StartSome is Start for a store some of whose ends a native stage holds
// itself: produce is nil when the writer is native, and reader i gets no
// pipe and no bridge (its file and Outs[i] are nil) when native(i).
func (s *Store) StartSome(n int, produce func() error, consume func(i int) error, native func(i int) bool) ([]*os.File, error) {
	bridged := func(i int) bool { return native == nil || !native(i) }
	rs, outs := make([]*os.File, n), make([]*os.File, n)
	for i := range n {
		if !bridged(i) {
			continue
		}
		r, out, err := Pipe(false)
		if err != nil {
			for j := range i {
				if rs[j] != nil {
					rs[j].Close()
					outs[j].Close()
				}
			}
			return nil, err
		}
		rs[i], outs[i] = r, out
	}
	s.Outs = outs
	if produce != nil {
		s.Go(produce)
	}
	for i := range n {
		if bridged(i) {
			s.Go(func() error { return consume(i) })
		}
	}
	return rs, nil
}
