package exec

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/parser"
	"github.com/ipcflow/ipcflow/stats"
)

// Options are `ipcflow run`'s flags.
type Options struct {
	Overrides []string // NAME=VALUE words
	DryRun    bool
	Label     bool
	KeepGoing bool
	Grace     time.Duration // SIGTERM to SIGKILL; 0: DefaultGrace
	Timeout   time.Duration // 0: none
	Stdout    io.Writer     // --dry-run's plan
	Stderr    io.Writer     // ipcflow's own messages
	// FlagEnv names the variables that set ipcflow's own flags
	// (IPCFLOW_GRACE...): stages do not inherit them.
	FlagEnv []string

	// Measure samples the stages while they run (--stats, --monitor).
	Measure bool
	// Started, when set, is called with the run's Recorder once its first
	// stages have started (--monitor draws from it).
	Started func(*stats.Recorder)
	// Report, when set, gets the run's figures at its end.
	Report func(*stats.Report)
	// Suspend and Resume, when set, are called as the flow stops for ^Z
	// and goes on after it (--monitor gives the terminal back meanwhile).
	Suspend, Resume func()
}

// DefaultGrace is how long stages get between SIGTERM and SIGKILL.
const DefaultGrace = 5 * time.Second

// Exit statuses of ipcflow itself (SPEC 6).
const (
	StatusUsage   = 2   // usage or check error: nothing was started
	StatusTimeout = 124 // --timeout expired (as timeout(1))
	StatusSetup   = 1   // an object could not be created
)

// Run runs flow g and returns ipcflow's exit status. Stages write to the
// process's real fds 0, 1, 2; o.Stderr carries ipcflow's own messages.
func Run(g *parser.Graph, o Options) int {
	if o.Grace <= 0 {
		o.Grace = DefaultGrace
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	plan, err := BuildPlan(g, o.Overrides, EnvironWithout(o.FlagEnv), o.Label)
	if err != nil {
		return report(o.Stderr, err)
	}
	for _, w := range plan.Warnings {
		fmt.Fprintf(o.Stderr, "ipcflow: warning: %s\n", w)
	}
	if o.DryRun {
		// What check warns of, --dry-run does too.
		for _, w := range parser.Warnings(g) {
			fmt.Fprintln(o.Stderr, w)
		}
		procs, err := plan.Processes(FlowNames{ID: "RUNID", Dir: "RUNDIR"})
		if err != nil {
			return report(o.Stderr, err)
		}
		plan.Print(o.Stdout, procs)
		return 0
	}
	// Whatever ipcflow inherited beyond 0, 1, 2 must not reach a stage.
	markCloexecFrom(3)

	f, err := newFlow(plan, o)
	if err != nil {
		return report(o.Stderr, err)
	}
	return f.supervise()
}

// report prints err as ipcflow's one line and returns the exit status.
func report(w io.Writer, err error) int {
	var ue *UsageError
	if errors.As(err, &ue) && ue.Positioned {
		fmt.Fprintln(w, ue.Msg)
		return StatusUsage
	}
	PrintMessage(w, err.Error())
	var le *LimitError
	if ue != nil || errors.As(err, &le) {
		return StatusUsage
	}
	return StatusSetup
}

// PrintMessage prints one of ipcflow's own messages on w with "ipcflow: "
// before each of its lines (CheckOverrides gives one line per bad
// argument), so that every line says where it comes from. The command
// line prints its own messages with it too.
func PrintMessage(w io.Writer, msg string) {
	for _, line := range strings.Split(msg, "\n") {
		fmt.Fprintf(w, "ipcflow: %s\n", line)
	}
}

// markCloexecFrom sets close-on-exec on every fd from first up, so a fd
// ipcflow inherited (from a test harness, a shell's `3<file`) does not leak
// into stages: a stage sees only its own fds.
func markCloexecFrom(first int) {
	if err := unix.CloseRange(uint(first), ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err == nil {
		return
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		var fd int
		if _, err := fmt.Sscan(e.Name(), &fd); err == nil && fd >= first {
			unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
		}
	}
}
