package exec

import (
	"os"
	"os/signal"

	"golang.org/x/sys/unix"
)

// runSignals are the signals a run handles itself (supervise.go). Go's
// first signal.Notify of each signal is a round trip with the runtime's
// signal thread, 0.15 to 1.5 ms for these seven on a busy two-core
// machine, all of it on the path of every start. So Run asks for them in a
// goroutine while it plans and makes the run's objects, and the
// supervisor waits for them before the first fork, so that no SIGCHLD is
// missed. A signal that comes in between waits in the channel for the
// supervisor, which then tears down as usual.
type runSignals struct {
	sigs  chan os.Signal // SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGTSTP, SIGCONT
	pipes chan os.Signal // SIGPIPE (see run)
	ready chan struct{}
}

func catchSignals() *runSignals {
	s := &runSignals{sigs: make(chan os.Signal, 8), pipes: make(chan os.Signal, 1), ready: make(chan struct{})}
	go func() {
		signal.Notify(s.sigs, unix.SIGCHLD, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGTSTP, unix.SIGCONT)
		signal.Notify(s.pipes, unix.SIGPIPE)
		close(s.ready)
	}()
	return s
}

// stop gives the signals back to their default handling.
func (s *runSignals) stop() {
	<-s.ready
	signal.Stop(s.sigs)
	signal.Stop(s.pipes)
}
