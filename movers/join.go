package movers

import (
	"errors"
	"fmt"
	"os"

	"github.com/ipcflow/ipcflow/fdio"
)

// StartJoin starts a fan-in: dst receives all of srcs[0] until its end of
// file, then all of srcs[1], and so on, as cat(1) would (SPEC 4). Producers
// further down the list block on their full pipes until their turn, which
// is what a shell's `cat <(a) <(b)` does too. Bytes move with splice(2)
// when a side is a pipe.
//
// The Mover owns srcs and dst: each src is closed at its end of file, dst at
// the end. If dst's reader goes away, every src still open is closed at
// once (their producers then see EPIPE) and the Mover ends without error.
func StartJoin(srcs []*os.File, dst *os.File) *Mover {
	m, err := newMover()
	if err != nil {
		for _, s := range srcs {
			closeFile(s)
		}
		closeFile(dst)
		return failedMover(err)
	}
	srcs = append([]*os.File(nil), srcs...)
	go m.run(func() error { return join(m, srcs, dst) })
	return m
}

func join(m *Mover, srcs []*os.File, dst *os.File) error {
	d, err := openEnd(dst, true)
	defer func() {
		for _, s := range srcs {
			closeFile(s)
		}
		d.close()
	}()
	if err != nil {
		if d == nil {
			closeFile(dst)
		}
		return err
	}
	stop := &m.ctl
	for i, s := range srcs {
		sfd, err := fdio.FD(s)
		if err != nil {
			return fmt.Errorf("join input %d: %w", i+1, err)
		}
		if sfd > 2 && fdio.KindOf(sfd) == fdio.KindSocket { // not ipcflow's own stdin: the user's shell shares it
			if err := nonblockSocket(sfd); err != nil {
				return fmt.Errorf("join input %d: %w", i+1, err)
			}
		}
		_, err = fdio.Copy(d.fd, sfd, stop)
		closeFile(s)
		srcs[i] = nil
		if err != nil {
			if errors.Is(err, fdio.ErrReaderGone) || errors.Is(err, fdio.ErrStopped) {
				return err
			}
			return fmt.Errorf("join input %d: %w", i+1, err)
		}
	}
	return nil
}
