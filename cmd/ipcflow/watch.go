package main

import (
	"errors"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kong"

	"github.com/ipcflow/ipcflow/exec"
	"github.com/ipcflow/ipcflow/watch"
)

// WatchCmd is `ipcflow watch` (SPEC 10): the flow run again whenever its
// script or an --on path changes. The work is package watch's.
type WatchCmd struct {
	File     string        `arg:"" completion-predictor:"script" help:"The .ipcflow script."`
	Params   []string      `arg:"" optional:"" completion-predictor:"params" help:"NAME=VALUE: set a param declared in the script."`
	On       []string      `placeholder:"PATH" sep:"none" completion-predictor:"path" help:"Also run again when PATH changes: a file, or a directory and everything below it. Repeatable."`
	Debounce time.Duration `default:"100ms" help:"Changes closer together than this make one run."`
	Clear    bool          `help:"Clear the terminal before each run (when stdout is one)."`

	// Passed on to each run.
	Label     bool          `help:"Prefix each line a stage writes to stderr with its name."`
	KeepGoing bool          `help:"When a stage fails, let the others finish."`
	Grace     time.Duration `default:"5s" help:"Time between SIGTERM and SIGKILL when a run is stopped."`
	Timeout   time.Duration `help:"Stop each run after this long (0: no limit)."`
}

// Help is shown by `ipcflow watch --help`.
func (WatchCmd) Help() string {
	return `Run the flow, and run it again when FILE or a PATH given with --on changes.
A change stops the running flow as SIGTERM would (grace, then SIGKILL,
everything removed) before the next run starts; a script that no longer
checks prints its errors and waits for the next change. One line on stderr
says how each run ended. SIGINT or SIGTERM stops the run and watch (exit
130 or 143). What is watched and ignored: docs/watch.md.`
}

func (c *WatchCmd) Run(s *Streams, kctx *kong.Context) error {
	if c.Debounce < 0 || c.Grace < 0 || c.Timeout < 0 {
		return &ExitStatus{Code: usageStatus, Msg: "watch: --debounce, --grace and --timeout take a duration of 0 or more"}
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(stop)
	err := watch.Watch(watch.Options{
		Script:   c.File,
		Params:   c.Params,
		On:       c.On,
		Debounce: c.Debounce,
		Clear:    c.Clear,
		Exe:      "/proc/self/exe",
		Argv0:    os.Args[0],
		RunFlags: c.runFlags(),
		// watch's flag variables (IPCFLOW_ON, IPCFLOW_GRACE...) stop
		// here: runFlags passes on what a run needs, and the stages
		// should see none of them.
		Env:    exec.EnvironWithout(flagEnvs(kctx)),
		Stdout: s.Stdout,
		Stderr: s.Stderr,
		Stop:   stop,
	})
	var stopped *watch.Stopped
	if err == nil {
		return nil
	}
	if errors.As(err, &stopped) {
		return &ExitStatus{Code: 128 + int(stopped.Signal)}
	}
	// Watch ends otherwise only when it cannot watch: a path that is not
	// there, an inotify limit.
	return &ExitStatus{Code: usageStatus, Msg: err.Error()}
}

// runFlags are the flags of each run: only those that differ from run's
// defaults, so that a run with none takes run's quick path (no kong).
func (c *WatchCmd) runFlags() []string {
	var flags []string
	if c.Label {
		flags = append(flags, "--label")
	}
	if c.KeepGoing {
		flags = append(flags, "--keep-going")
	}
	if c.Grace != exec.DefaultGrace {
		flags = append(flags, "--grace="+c.Grace.String())
	}
	if c.Timeout != 0 {
		flags = append(flags, "--timeout="+c.Timeout.String())
	}
	return flags
}
