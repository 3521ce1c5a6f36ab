package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/ipcflow/ipcflow/exec"
	"github.com/ipcflow/ipcflow/parser"
)

// CheckCmd parses and checks scripts without running anything.
type CheckCmd struct {
	Files []string `arg:"" name:"file" help:"Scripts to check."`
}

// Help is shown by `ipcflow check --help`.
func (CheckCmd) Help() string {
	return `Parse every FILE and run every check a run would make (names, ports,
edge types and options, cycles, semaphore deadlocks, shell syntax of stage
commands). Nothing is printed for good files. Problems are printed on stderr
as FILE:LINE:COL: message, sorted, at most 10 per file and then a line
"too many errors"; the exit status is then 2.`
}

func (c *CheckCmd) Run(s *Streams) error {
	failed := false
	for _, f := range c.Files {
		g, err := parser.ParseFile(f)
		if err != nil {
			printParseError(s.Stderr, err)
			failed = true
			continue
		}
		// Warnings do not change the exit status.
		for _, w := range parser.Warnings(g) {
			fmt.Fprintln(s.Stderr, w)
		}
	}
	if failed {
		return &ExitStatus{Code: usageStatus}
	}
	return nil
}

// printParseError prints the errors of a script: one line per problem,
// at most parser.MaxErrors and a "too many errors" line, or one line
// saying why the file could not be read.
func printParseError(w io.Writer, err error) {
	var list parser.ErrorList
	if errors.As(err, &list) {
		fmt.Fprintln(w, list.Truncated(parser.MaxErrors).Error())
		return
	}
	exec.PrintMessage(w, fileError(err))
}

// fileError is the message for a script that could not be read: its path
// and why, without the name of the system call ("stat x: ...").
func fileError(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Path + ": " + pe.Err.Error()
	}
	return err.Error()
}
