package main

import (
	"github.com/ipcflow/ipcflow/diag"
	"github.com/ipcflow/ipcflow/exec"
	"github.com/ipcflow/ipcflow/parser"
)

// CheckCmd parses and checks scripts without running anything.
type CheckCmd struct {
	Files []string `arg:"" name:"file" completion-predictor:"script" help:"Scripts to check (- for standard input)."`
}

// Help is shown by `ipcflow check --help`.
func (CheckCmd) Help() string {
	return `Parse every FILE and run every check a run would make (names, ports,
edge types and options, cycles, semaphore deadlocks, shell syntax of stage
commands). Nothing is printed for good files. Problems are printed on stderr
as FILE:LINE:COL: message, sorted, at most 10 per file and then a line
"too many errors"; the exit status is then 2. A FILE of - is the script on
standard input, named <stdin> in messages.`
}

func (c *CheckCmd) Run(s *Streams) error {
	stdins := 0
	for _, f := range c.Files {
		if f == stdinArg {
			stdins++
		}
	}
	if stdins > 1 {
		return &ExitStatus{Code: usageStatus, Msg: "check: - (standard input) given more than once"}
	}
	failed := false
	for _, f := range c.Files {
		var g *parser.Graph
		var err error
		if f == stdinArg {
			src, rerr := readStdinScript(s)
			if rerr != nil {
				return rerr
			}
			g, err = parser.Parse(parser.StdinName, src)
		} else {
			g, err = parser.ParseFile(f)
		}
		if err != nil {
			exec.PrintParseError(s.scriptErrors(), err)
			failed = true
			continue
		}
		// Warnings do not change the exit status; on a terminal they
		// get their caret as errors do.
		if ws := parser.Warnings(g); len(ws) > 0 {
			diag.Print(s.scriptErrors(), ws)
		}
	}
	if failed {
		return &ExitStatus{Code: usageStatus}
	}
	return nil
}
