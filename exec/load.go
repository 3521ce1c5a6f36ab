package exec

import (
	"errors"
	"io"
	"io/fs"

	"github.com/ipcflow/ipcflow/diag"
	"github.com/ipcflow/ipcflow/parser"
)

// Load reads and checks the script at path and its NAME=VALUE arguments,
// as a run does before anything starts (SPEC 5), and prints every problem
// on w: the script's as FILE:LINE:COL: message lines, then the
// arguments' (which have no place in the script), or one line saying why
// the file could not be read. The graph is nil when there was a problem.
// `ipcflow run` and `ipcflow watch` (before each run) both call it, so
// that they report the same.
func Load(w io.Writer, path string, args []string) *parser.Graph {
	f, g, err := parser.ParseFileAST(path)
	return load(w, path, f, g, err, args)
}

// LoadSource is Load for a script already read (from standard input:
// name is then parser.StdinName).
func LoadSource(w io.Writer, name string, src []byte, args []string) *parser.Graph {
	f, g, err := parser.ParseSourceAST(name, src)
	return load(w, name, f, g, err, args)
}

func load(w io.Writer, path string, f *parser.File, g *parser.Graph, err error, args []string) *parser.Graph {
	if err != nil {
		PrintParseError(w, err)
		if f != nil { // the declarations are known even when the script has errors
			if _, err := parser.CheckOverrides(path, f.Params(), args); err != nil {
				PrintMessage(w, err.Error())
			}
		}
		return nil
	}
	if _, err := g.CheckOverrides(args); err != nil {
		PrintMessage(w, err.Error())
		return nil
	}
	return g
}

// PrintParseError prints the errors of a script: one line per problem,
// at most parser.MaxErrors and a "too many errors" line, or one line
// saying why the file could not be read.
func PrintParseError(w io.Writer, err error) {
	var list parser.ErrorList
	if errors.As(err, &list) {
		diag.Print(w, list.Truncated(parser.MaxErrors)) // with carets where w asks for them
		return
	}
	PrintMessage(w, fileError(err))
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
