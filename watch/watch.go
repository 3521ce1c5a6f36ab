// Package watch runs a flow again whenever its script or a path it
// depends on changes (SPEC 10, `ipcflow watch`).
//
// Each run is a child process, `ipcflow run FILE NAME=VALUE...`: every run
// is isolated from the next, and is stopped the way SIGTERM stops any run
// (its grace, then SIGKILL, everything removed), which run already knows;
// watch only decides when. Before each run the script is checked here, so
// that a script with errors prints them and waits for the next change
// instead of starting a run that would only fail.
//
// The files: watch.go is the loop (changes, debounce, one run at a time),
// paths.go what is watched and which events count, run.go the child
// process, limits.go inotify's limits. docs/watch.md is the user's side.
package watch

import (
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/ipcflow/ipcflow/exec"
)

// Options are what `ipcflow watch` was given.
type Options struct {
	Script   string        // the .ipcflow script
	Params   []string      // NAME=VALUE arguments for each run
	On       []string      // more files and directories to watch
	Debounce time.Duration // changes closer together than this make one run
	Clear    bool          // clear the terminal before each run, when Stdout is one

	// Each run is Exe started with argv [Argv0, "run", RunFlags..., Script,
	// Params...]: ipcflow's own binary, argv[0] kept (a test binary
	// standing in for ipcflow dispatches on it).
	Exe      string
	Argv0    string
	RunFlags []string
	Env      []string // each run's environment (nil: watch's own)

	Stdout, Stderr io.Writer
	Stop           <-chan os.Signal // SIGINT or SIGTERM: stop the run, then watch
}

// Stopped is Watch's error when a signal ended it: its exit status is
// 128+N, as a run's is.
type Stopped struct{ Signal syscall.Signal }

func (s *Stopped) Error() string { return "stopped by " + s.Signal.String() }

// clearScreen moves the cursor home and clears the screen (ANSI).
const clearScreen = "\x1b[H\x1b[2J"

// Watch runs the flow, and runs it again after each change, until a
// signal arrives on o.Stop (the error is then a *Stopped) or watching
// fails (a path that is not there, an inotify limit).
//
// One run at a time: the first change seen while a run is alive sends
// it SIGTERM at once (so its grace overlaps the debounce); the next run
// starts when that one has ended and no change has come for o.Debounce.
// Changes in between only mark that a run is due.
func Watch(o Options) error {
	w, err := newWatcher(o.Script, o.On)
	if err != nil {
		return err
	}
	defer w.close()

	var (
		r        *run // the live run, or nil
		due      bool // a change has come that no run has seen yet
		settling bool // a change came less than o.Debounce ago
	)
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	startOrWait := func() error {
		due = false
		if exec.Load(o.Stderr, o.Script, o.Params) == nil {
			exec.PrintMessage(o.Stderr, "watch: waiting for a change")
			return nil
		}
		if o.Clear && isTerminal(o.Stdout) {
			io.WriteString(o.Stdout, clearScreen)
		}
		var err error
		r, err = start(o)
		return err
	}
	endRun := func(why string) {
		if r == nil {
			return
		}
		r.stop(why)
		r.report(o.Stderr, <-r.done)
		r = nil
	}
	defer endRun("as watch ended")

	if err := startOrWait(); err != nil {
		return err
	}
	for {
		var runDone <-chan error
		if r != nil {
			runDone = r.done
		}
		select {
		case sig := <-o.Stop:
			s, _ := sig.(syscall.Signal)
			endRun("by " + s.String())
			return &Stopped{Signal: s}
		case ev, ok := <-w.fs.Events:
			if !ok {
				return fmt.Errorf("watch: the watcher stopped")
			}
			counts, err := w.counts(ev)
			if err != nil {
				return err
			}
			if counts {
				due, settling = true, true
				quiet.Reset(o.Debounce)
				if r != nil {
					r.stop("for a change")
				}
			}
		case err := <-w.fs.Errors:
			// The only error fsnotify reports here is its queue's
			// overflow: changes were lost, so take it as one.
			exec.PrintMessage(o.Stderr, "watch: "+err.Error()+"; taken as a change")
			due, settling = true, true
			quiet.Reset(o.Debounce)
		case <-quiet.C:
			settling = false
			if due && r == nil {
				if err := startOrWait(); err != nil {
					return err
				}
			}
		case err := <-runDone:
			r.report(o.Stderr, err)
			r = nil
			if due && !settling {
				if err := startOrWait(); err != nil {
					return err
				}
			}
		}
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
