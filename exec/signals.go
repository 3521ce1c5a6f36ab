package exec

import (
	"os"
	"os/signal"

	"golang.org/x/sys/unix"
)

// flowSignals are the signals a flow handles itself (flow.supervise). Go's
// first signal.Notify of each signal is a round trip with the runtime's
// signal thread, 0.15 to 1.5 ms for these seven on a busy two-core
// machine, all of it on the path of every start. So newFlow asks for them
// in a goroutine while it makes the flow's objects (once the process budget
// allows the thread the answer takes: limits.go), and nothing waits for
// the answer: the supervisor reaps once when it comes, for a stage that
// ended before SIGCHLD was caught. A signal caught before the supervisor
// runs waits in the channel for it, which then tears down as usual; one
// that comes before it is caught has its default effect (SIGINT kills
// ipcflow, and the guardian cleans up).
type flowSignals struct {
	sigs  chan os.Signal // SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGTSTP, SIGCONT
	pipes chan os.Signal // SIGPIPE (see flow.supervise)
	ready chan struct{}
}

func catchSignals() *flowSignals {
	s := &flowSignals{sigs: make(chan os.Signal, 8), pipes: make(chan os.Signal, 1), ready: make(chan struct{})}
	go func() {
		signal.Notify(s.sigs, unix.SIGCHLD, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGTSTP, unix.SIGCONT)
		signal.Notify(s.pipes, unix.SIGPIPE)
		close(s.ready)
	}()
	return s
}

// stop gives the signals back to their default handling.
func (s *flowSignals) stop() {
	<-s.ready
	signal.Stop(s.sigs)
	signal.Stop(s.pipes)
}
