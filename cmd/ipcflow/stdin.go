package main

import (
	"errors"
	"fmt"

	"github.com/ipcflow/ipcflow/parser"
)

// stdinArg is the file name that means "the script is on standard input"
// for run and check (fmt reads it when given no file at all).
const stdinArg = "-"

// readStdinScript reads a script from standard input, at most
// parser.MaxScriptSize bytes; messages about it name it parser.StdinName.
func readStdinScript(s *Streams) ([]byte, error) {
	src, err := parser.ReadScriptFrom(parser.StdinName, s.Stdin)
	if errors.Is(err, parser.ErrTooLarge) {
		return nil, &ExitStatus{Code: usageStatus, Msg: err.Error()}
	}
	if err != nil {
		return nil, &ExitStatus{Code: usageStatus, Msg: fmt.Sprintf("%s: read standard input: %v", parser.StdinName, err)}
	}
	return src, nil
}

// stdinEdges are the `stdin -> ...` edges of a script that was itself read
// from standard input: that stream has been read to its end, so such an
// edge would silently give the stage nothing. `cat flow | ipcflow run -`
// has no other data to hand; the script must then be a file.
func stdinEdges(g *parser.Graph) parser.ErrorList {
	var errs parser.ErrorList
	for _, e := range g.Edges {
		if e.From.Stage == nil && e.From.Port == parser.Stdin {
			errs = append(errs, &parser.Error{File: g.File, Pos: e.From.Pos,
				Msg: fmt.Sprintf("%s -> %s: standard input holds the script itself (run -); give the script as a file to feed the flow", e.From, e.To)})
		}
	}
	return errs
}
