package main

import (
	"time"

	"github.com/ipcflow/ipcflow/locks"
)

// LockCmd runs a command holding one unit of a semaphore (SPEC 7, 8):
// locks.Hold does the work.
type LockCmd struct {
	Timeout time.Duration `help:"Give up after waiting this long for the unit: one line on stderr, exit status 1 (0: wait as long as it takes)." env:"IPCFLOW_LOCK_TIMEOUT"`
	Sem     string        `arg:"" help:"Semaphore: a name declared with 'sem' in the script (found through IPCFLOW_SEM_<NAME>), or a POSIX name /NAME."`
	Command []string      `arg:"" passthrough:"" help:"Command to run holding the unit, after --."`
}

func (c *LockCmd) Run(s *Streams) error {
	argv := c.Command
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	if len(argv) == 0 {
		return &ExitStatus{Code: usageStatus, Msg: "lock: no command: ipcflow lock SEM [--timeout D] -- COMMAND..."}
	}
	h := &locks.Hold{Sem: c.Sem, Timeout: c.Timeout, Argv: argv, Stdin: s.Stdin, Stdout: s.Stdout, Stderr: s.Stderr}
	code, err := h.Run()
	switch {
	case err != nil:
		return &ExitStatus{Code: code, Msg: err.Error()}
	case code != 0:
		return &ExitStatus{Code: code}
	}
	return nil
}
