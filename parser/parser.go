// Package parser reads .ipcflow scripts: it lexes and parses them into an
// AST (for fmt), resolves and checks them into a Graph (for exec and graph),
// and reports every problem as FILE:LINE:COL: message.
package parser

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"
)

// ParseFile reads and checks the script at path. A file that cannot be read
// gives a plain error; a script with problems gives an ErrorList.
func ParseFile(path string) (*Graph, error) {
	_, g, err := ParseFileAST(path)
	return g, err
}

// ParseFileAST is ParseFile that also returns the script's AST, which
// holds the declarations even when the script has errors (run checks its
// NAME=VALUE arguments against the declared params either way). The AST
// is nil when the file could not be read or is not UTF-8.
func ParseFileAST(path string) (*File, *Graph, error) {
	src, err := ReadScript(path)
	if err != nil {
		return nil, nil, err
	}
	f, g, errs := parse(path, src)
	return f, g, errs.Err()
}

// StdinName names a script read from standard input (`ipcflow fmt`,
// `run -`, `check -`) in every message about it, as gofmt and compilers do.
const StdinName = "<stdin>"

// ParseSourceAST is ParseFileAST for a script already read, such as one
// from standard input; name names it in messages.
func ParseSourceAST(name string, src []byte) (*File, *Graph, error) {
	f, g, errs := parse(name, src)
	return f, g, errs.Err()
}

// MaxScriptSize is the largest script ipcflow reads. Scripts are text,
// written by hand or generated; a path such as /dev/zero, or a generator
// gone wrong, must give one line of error, not exhaust memory.
const MaxScriptSize = 64 << 20

// ErrTooLarge is the error, wrapped with the script's name, for a script
// of more than MaxScriptSize bytes.
var ErrTooLarge = errors.New("script larger than 64 MiB")

// ReadScript reads a script file, refusing directories and files larger
// than MaxScriptSize with a clear error.
func ReadScript(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("%s is a directory, not a script", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadScriptFrom(path, f)
}

// ReadScriptFrom reads a script from r (a file, standard input), at most
// MaxScriptSize bytes of it; name names it in the error for a larger one.
// Read errors are returned as they are.
func ReadScriptFrom(name string, r io.Reader) ([]byte, error) {
	src, err := io.ReadAll(io.LimitReader(r, MaxScriptSize+1))
	if err != nil {
		return nil, err
	}
	if len(src) > MaxScriptSize {
		return nil, fmt.Errorf("%s: %w", name, ErrTooLarge)
	}
	return src, nil
}

// Parse parses and checks a script. On success the error is nil; otherwise
// it is an ErrorList of every problem, sorted by position, and the graph is
// nil.
func Parse(filename string, src []byte) (*Graph, error) {
	_, g, errs := parse(filename, src)
	return g, errs.Err()
}

// parse parses and checks a script: its AST (nil when it is not UTF-8),
// its Graph (nil when there are errors) and every error, sorted.
func parse(filename string, src []byte) (*File, *Graph, ErrorList) {
	f, errs := parseAST(filename, src)
	if f == nil {
		return nil, nil, errs
	}
	g, rerrs := check(f, len(errs) > 0)
	if errs = append(errs, rerrs...); len(errs) > 0 {
		errs.Sort()
		return f, nil, errs
	}
	return f, g, nil
}

// ParseAST parses a script into its AST without resolving names: what fmt
// needs. The error, if any, is an ErrorList of syntax errors.
func ParseAST(filename string, src []byte) (*File, error) {
	f, errs := parseAST(filename, src)
	if len(errs) > 0 {
		errs.Sort()
		return f, errs
	}
	return f, nil
}

// Check resolves and checks a parsed script.
func Check(f *File) (*Graph, error) {
	g, errs := check(f, false)
	if len(errs) > 0 {
		errs.Sort()
		return nil, errs
	}
	return g, nil
}

func parseAST(filename string, src []byte) (*File, ErrorList) {
	if !utf8.Valid(src) {
		off := 0
		for off < len(src) {
			r, n := utf8.DecodeRune(src[off:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			off += n
		}
		l := newLexer(string(src[:off]))
		pos := l.position(off)
		return nil, ErrorList{{File: filename, Pos: pos, Msg: fmt.Sprintf("not a UTF-8 text file (byte 0x%02x)", src[off])}}
	}
	p := newParser(filename, string(src))
	f := p.parseFile()
	p.nulBytes()
	return f, p.errs
}

// errNUL is the message for a NUL byte anywhere in a script. The shell
// parser drops NULs from commands and words without a word, so a command
// would silently run with different arguments: the byte is an error.
const errNUL = "NUL byte in the script (no command, argument or value can hold one)"

// nulBytes reports every NUL byte of the script. In DSL text the lexer
// reports it too, with the same message, which Sort drops as a duplicate.
func (p *parser) nulBytes() {
	in := p.l.input
	for off := strings.IndexByte(in, 0); off >= 0; {
		p.errorf(p.pos(off), errNUL)
		next := strings.IndexByte(in[off+1:], 0)
		if next < 0 {
			break
		}
		off += 1 + next
	}
}

// check resolves and checks f; partial says that f lacks statements that
// had syntax errors.
func check(f *File, partial bool) (*Graph, ErrorList) {
	return resolve(f, partial)
}
