package channels

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Helpers shared by the bridged types (mq, shm, mmap, udp): the pipes
// between a stage and its bridge, and the bookkeeping of a bridge's
// goroutines.

// BridgePipeSize is the buffer of a bridge's pipe: larger than the default
// 64 KiB so the stage and the bridge wake each other less often, but not
// 1 MiB: every bridged edge has two such pipes, charged to the user's pipe
// budget (budget.go: 64 MiB before new pipes shrink to 8 KiB), and 256 KiB
// moved as fast as 1 MiB here. If the budget refuses, the pipe keeps the
// kernel's default.
const BridgePipeSize = 256 << 10

// bridgePipe makes the pipe between a stage and a bridge. The stage's end
// stays blocking (ordinary tools expect that); ipcflow's end is
// non-blocking, so the bridge goroutine waits in Go's poller and closing the
// file wakes it (a blocking read(2) would not notice a close). ourRead says
// which end is ipcflow's.
func bridgePipe(ourRead bool) (stage, ours *os.File, err error) {
	stage, fd, err := rawBridgePipe(ourRead)
	if err != nil {
		return nil, nil, err
	}
	return stage, os.NewFile(uintptr(fd), "|bridge"), nil
}

// rawBridgePipe is bridgePipe for a bridge that waits in poll(2) itself:
// ipcflow's end is a plain non-blocking fd, kept out of Go's poller.
func rawBridgePipe(ourRead bool) (stage *os.File, ours int, err error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, -1, fmt.Errorf("pipe: %w", err)
	}
	size := min(int64(BridgePipeSize), PipeMaxSize())
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

// isGone tells a write that failed because the reader went away (EPIPE,
// or a reset socket) from a real failure.
func isGone(err error) bool {
	return errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.ECONNREFUSED)
}

// ends holds the fds a channel hands to the stages, and closes those that
// were never handed over.
type ends struct {
	mu      sync.Mutex
	w       *os.File
	r       []*os.File
	handedW bool
	handedR []bool
}

func newEnds(w *os.File, r []*os.File) ends {
	return ends{w: w, r: r, handedR: make([]bool, len(r))}
}

func (e *ends) Writer() *os.File {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.handedW = true
	return e.w
}

func (e *ends) Reader(i int) *os.File {
	e.mu.Lock()
	defer e.mu.Unlock()
	if i < 0 || i >= len(e.r) {
		return nil
	}
	e.handedR[i] = true
	return e.r[i]
}

// closeUnhanded closes the ends exec never took; those it took are exec's
// to close (closing them here could close an fd number reused since).
func (e *ends) closeUnhanded() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.handedW && e.w != nil {
		e.w.Close()
		e.handedW = true
	}
	for i, f := range e.r {
		if !e.handedR[i] && f != nil {
			f.Close()
			e.handedR[i] = true
		}
	}
}

// bridges runs a channel's bridge goroutines and keeps the first error.
type bridges struct {
	// closing is set by Close before it closes the bridges' files: the
	// errors that follows (a closed file) are teardown, not failures.
	closing atomic.Bool
	wg      sync.WaitGroup
	mu      sync.Mutex
	err     error
	edge    string
}

func (b *bridges) goRun(f func() error) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		if err := f(); err != nil && !b.closing.Load() {
			b.mu.Lock()
			if b.err == nil {
				b.err = fmt.Errorf("edge %s: %w", b.edge, err)
			}
			b.mu.Unlock()
		}
	}()
}

func (b *bridges) wait() error {
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
		r, out, err := bridgePipe(false)
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

// startFanOut runs a multi-reader channel's bridges: produce fills the
// object, consume(i) empties it into reader i's pipe.
func (b *bridges) startFanOut(produce func() error, readers int, consume func(i int) error) {
	b.goRun(produce)
	for i := range readers {
		b.goRun(func() error { return consume(i) })
	}
}

// storeBridges is the plain-fd side of a channel that keeps the stream in
// a store of its own (the shm ring, the mmap file): the stages' ends, the
// bridges, and ipcflow's ends of the readers' pipes, which the consumers'
// bridges fill from the store.
type storeBridges struct {
	ends
	br   bridges
	outs []*os.File
}

// start makes a pipe for each of n readers, hands out w as the producer's
// end and starts the bridges. On error only w is kept (for Close).
func (s *storeBridges) start(w *os.File, n int, produce func() error, consume func(i int) error) error {
	rs, outs, err := readerPipes(n)
	if err != nil {
		s.ends = newEnds(w, nil)
		return err
	}
	s.outs = outs
	s.ends = newEnds(w, rs)
	s.br.startFanOut(produce, n, consume)
	return nil
}
