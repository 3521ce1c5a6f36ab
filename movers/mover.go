// Package movers holds the data movers a run starts inside ipcflow
// between plain fds: the fan-out (tee.go, with the backlogs of its lagging
// destinations in tee_backlog.go), the fan-in (join.go) and the --label
// copier of a stage's stderr (label.go). exec plans them and wires the
// fds; they know nothing of edges or stages.
package movers

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/fdio"
)

// Mover is a running fan-out (StartTee) or fan-in (StartJoin): goroutines
// of ipcflow that move bytes between fds until the stream ends. A Mover owns
// every file it was given and closes each as soon as it is done with it, so
// that end of file and EPIPE reach the processes at the other ends at the
// right moment. The one exception is fds 0, 1 and 2 of ipcflow itself:
// passed as os.Stdin, os.Stdout or os.Stderr they are used but never closed
// (closing them would let an unrelated open take their numbers); exec passes
// a dup when it wants the mover to close the end.
type Mover struct {
	done  chan struct{}
	err   error
	spill atomic.Int64 // bytes that went through a spill file (fan-out)

	mu  sync.Mutex
	ctl fdio.Stop // ctl.FD: the eventfd that Close writes; -1 once closed
}

// newMover makes a Mover that has not started; go m.run(...) starts it.
func newMover() (*Mover, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	m := &Mover{done: make(chan struct{})}
	m.ctl.FD = fd
	return m, nil
}

// failedMover is a Mover that never ran: Wait returns err.
func failedMover(err error) *Mover {
	m := &Mover{done: make(chan struct{}), err: err}
	m.ctl.FD = -1
	close(m.done)
	return m
}

// run runs body and records how it ended. A stop requested by Close is not
// an error; neither is a reader that went away (the producer sees EPIPE).
func (m *Mover) run(body func() error) {
	err := body()
	if errors.Is(err, fdio.ErrStopped) || errors.Is(err, fdio.ErrReaderGone) {
		err = nil
	}
	m.err = err
	m.mu.Lock()
	unix.Close(m.ctl.FD)
	m.ctl.FD = -1
	m.mu.Unlock()
	close(m.done)
}

// Wait blocks until the mover has finished and returns its error, if any:
// an I/O error other than a reader going away.
func (m *Mover) Wait() error {
	<-m.done
	return m.err
}

// Close stops the mover if it is still running, waits for it to let go of
// its fds and closes them. Safe to call more than once, and after Wait.
func (m *Mover) Close() error {
	m.ctl.Request()
	m.mu.Lock()
	m.ctl.Kick()
	m.mu.Unlock()
	<-m.done
	return nil
}

// Bytes is how many bytes the mover has taken from its source(s) so far.
func (m *Mover) Bytes() int64 { return m.ctl.Bytes() }

// end is one file a mover owns.
type end struct {
	f    *os.File // as given, until closed (at once if reopened)
	fd   int      // the fd to do I/O on: f's own, or own
	own  int      // a private non-blocking reopen of f, or -1
	kind fdio.Kind
}

// openEnd prepares f for a mover. A destination that is a pipe or a
// terminal is reopened through /proc/self/fd as a new open file description
// with O_NONBLOCK: the mover can then wait in poll(2) (and so be stopped)
// without setting O_NONBLOCK on a description it may share with others
// (ipcflow's own stdout is shared with every stage that writes to it, and a
// terminal with the user's shell). Opening a pipe whose reader has gone
// fails with ENXIO: that is fdio.ErrReaderGone.
func openEnd(f *os.File, write bool) (*end, error) {
	fd, err := fdio.FD(f)
	if err != nil {
		return nil, err
	}
	e := &end{f: f, fd: fd, own: -1, kind: fdio.KindOf(fd)}
	if e.kind == fdio.KindSocket && fd > 2 {
		if err := nonblockSocket(fd); err != nil {
			return e, err
		}
	}
	if write && (e.kind == fdio.KindPipe || e.kind == fdio.KindChar) {
		nfd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", fd), unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		switch {
		case err == nil:
			// The reopen is a full replacement: give back f's fd now
			// (a big fan-out would otherwise hold two per output).
			e.fd, e.own = nfd, nfd
			closeFile(f)
			e.f = nil
		case err == unix.ENXIO && e.kind == fdio.KindPipe:
			return e, fdio.ReaderGone()
		}
		// Anything else (no /proc): use f's own description; a full
		// blocking destination then holds the mover until it drains.
	}
	return e, nil
}

// nonblockSocket puts a socket end of a mover into non-blocking mode. The
// flag on a pipe only matters to splice's pipe side (SPLICE_F_NONBLOCK
// covers that); a socket is read and written by the socket's own code,
// which blocks on a blocking socket whatever the splice flags say, and
// holds the pipe's lock while it does: a join stuck there could not be
// stopped, and the stage on the pipe's other end hung in uninterruptible
// sleep with it. A socket given to a mover is the channel's own end, held
// by no stage, so its description is ipcflow's to change.
func nonblockSocket(fd int) error {
	if err := unix.SetNonblock(fd, true); err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	return nil
}

// close closes the end's fds (never 0, 1, 2 of ipcflow itself).
func (e *end) close() {
	if e == nil {
		return
	}
	if e.own >= 0 {
		unix.Close(e.own)
		e.own = -1
	}
	if e.f != nil {
		closeFile(e.f)
		e.f = nil
	}
}

// closeFile closes a file a mover was given, except ipcflow's own stdio.
func closeFile(f *os.File) {
	if f == nil || f == os.Stdin || f == os.Stdout || f == os.Stderr {
		return
	}
	f.Close()
}
