package watch

import (
	"fmt"
	"io"
	osexec "os/exec"
	"runtime"
	"strings"
	"syscall"

	"github.com/ipcflow/ipcflow/exec"
)

// run is one run of the flow: `ipcflow run` in a child process.
type run struct {
	cmd     *osexec.Cmd
	done    chan error // the child's Wait, once
	stopped string     // why watch sent it SIGTERM ("" while it did not)
}

// start starts a run of o.Script. The child gets a process group of its
// own, so that the terminal's ^C reaches watch alone and the run is
// stopped once, by watch's SIGTERM; and SIGTERM as its parent-death
// signal, so that a watch killed outright does not leave it running.
func start(o Options) (*run, error) {
	script := o.Script
	if strings.HasPrefix(script, "-") {
		script = "./" + script // a file, not a flag
	}
	argv := append([]string{o.Argv0, "run"}, o.RunFlags...)
	argv = append(append(argv, script), o.Params...)
	cmd := &osexec.Cmd{
		Path:        o.Exe,
		Args:        argv,
		Env:         o.Env,
		Stdout:      o.Stdout,
		Stderr:      o.Stderr,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM},
	}
	// The parent-death signal belongs to the thread that forked
	// (golang/go#27505): locked, that thread cannot be one that exits.
	runtime.LockOSThread()
	err := cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		return nil, fmt.Errorf("watch: start a run: %w", err)
	}
	r := &run{cmd: cmd, done: make(chan error, 1)}
	go func() { r.done <- cmd.Wait() }()
	return r, nil
}

// stop sends the run SIGTERM, once: its grace, SIGKILL and teardown are
// its own.
func (r *run) stop(why string) {
	if r.stopped != "" {
		return
	}
	r.stopped = why
	r.cmd.Process.Signal(syscall.SIGTERM)
}

// report prints the one line that says how the run ended: "stopped"
// only when watch's SIGTERM ended it, not when it had finished anyway.
func (r *run) report(w io.Writer, waitErr error) {
	ps := r.cmd.ProcessState
	if ps == nil { // Wait failed before the child was reaped
		exec.PrintMessage(w, "watch: run ended: "+waitErr.Error())
		return
	}
	status := ps.String() // "exit status 1", "signal: killed"
	if r.stopped != "" && !ps.Success() {
		status = "stopped " + r.stopped + " (" + status + ")"
	}
	exec.PrintMessage(w, "watch: run ended: "+status)
}
