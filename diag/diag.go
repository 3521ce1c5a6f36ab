// Package diag prints a script's errors for people: each
// FILE:LINE:COL: message line, and, when the stream is a terminal (or
// colour is asked for), the source line and a caret under the column
// after it, in colour unless NO_COLOR is set or --color=never. Off a
// terminal it prints the one line alone, so that editors' problem
// matchers and grep keep working (SPEC 15).
//
// A command passes a *Writer where it would pass its stderr for script
// errors; exec.PrintParseError prints through Print, which looks for it.
// Anything else written to a Writer passes through unchanged.
package diag

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/ipcflow/ipcflow/parser"
)

// Mode is the --color setting.
type Mode string

const (
	Auto   Mode = "auto"   // carets on a terminal, colour there too unless NO_COLOR is set
	Always Mode = "always" // carets and colour wherever the errors go
	Never  Mode = "never"  // carets on a terminal, never colour
)

// Writer is a stream for script errors: W, with how to show them.
type Writer struct {
	W    io.Writer
	Mode Mode // "" is Auto
}

func (w *Writer) Write(p []byte) (int, error) { return w.W.Write(p) }

// style says whether carets and colour are shown on w.
func (w *Writer) style() (caret, color bool) {
	mode := w.Mode
	tty := isTerminal(w.W)
	noColor := os.Getenv("NO_COLOR") != ""
	switch mode {
	case Always:
		return true, true
	case Never:
		return tty, false
	default:
		return tty, tty && !noColor
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

const (
	bold  = "\x1b[1m"
	red   = "\x1b[1;31m"
	green = "\x1b[1;32m"
	reset = "\x1b[0m"
)

// Print prints list on w, one FILE:LINE:COL: message line per error. When
// w is a *Writer whose style asks for it, each line is followed by the
// source line it points into and a caret under its column (not for an
// error without a position, nor a file that cannot be read again, such as
// standard input).
func Print(w io.Writer, list parser.ErrorList) {
	dw, ok := w.(*Writer)
	if !ok {
		fmt.Fprintln(w, list.Error())
		return
	}
	caret, color := dw.style()
	if !caret && !color {
		fmt.Fprintln(dw.W, list.Error())
		return
	}
	var b bytes.Buffer
	sources := map[string][]string{}
	for _, e := range list {
		line := e.Error()
		if color {
			if loc, msg, ok := strings.Cut(line, ": "); ok {
				line = bold + loc + ":" + reset + " " + msg
			}
		}
		b.WriteString(line)
		b.WriteByte('\n')
		if !caret || !e.Pos.IsValid() {
			continue
		}
		lines, seen := sources[e.File]
		if !seen {
			if src, err := parser.ReadScript(e.File); err == nil {
				lines = strings.Split(string(src), "\n")
			}
			sources[e.File] = lines
		}
		if e.Pos.Line > len(lines) {
			continue
		}
		b.WriteString(Caret(lines[e.Pos.Line-1], e.Pos.Col, color))
	}
	dw.W.Write(b.Bytes())
}

// Caret is src (one line of a script) and, under it, a caret at byte
// column col (1-based), each ending in a newline. Tabs before the column
// are kept in the caret's line so that it lines up as the terminal shows
// the source; a column past the line's end points just after it.
func Caret(src string, col int, color bool) string {
	src = strings.TrimRight(src, "\r")
	if !utf8.ValidString(src) {
		src = strings.ToValidUTF8(src, "\uFFFD")
	}
	col = max(1, min(col, len(src)+1))
	var pad strings.Builder
	for _, r := range src[:col-1] {
		if r == '\t' {
			pad.WriteByte('\t')
		} else {
			pad.WriteByte(' ')
		}
	}
	mark := "^"
	if color {
		mark = green + "^" + reset
	}
	return src + "\n" + pad.String() + mark + "\n"
}
