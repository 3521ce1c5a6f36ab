package parser

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem found in a script, at a position in it.
type Error struct {
	File string
	Pos  Pos
	Msg  string
}

// Error prints "FILE:LINE:COL: message", the form editors and compilers use.
func (e *Error) Error() string {
	if !e.Pos.IsValid() {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Pos.Line, e.Pos.Col, e.Msg)
}

// ErrorList is every problem found in a script, sorted by position.
type ErrorList []*Error

// Error prints one error per line.
func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Sort orders the list by file, line, column and then message, and drops
// exact duplicates (a fan-out can reach the same bad option twice).
func (l *ErrorList) Sort() {
	s := *l
	sort.SliceStable(s, func(i, j int) bool {
		a, b := s[i], s[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Pos.Line != b.Pos.Line {
			return a.Pos.Line < b.Pos.Line
		}
		if a.Pos.Col != b.Pos.Col {
			return a.Pos.Col < b.Pos.Col
		}
		return a.Msg < b.Msg
	})
	out := s[:0]
	for i, e := range s {
		if i > 0 && *e == *s[i-1] {
			continue
		}
		out = append(out, e)
	}
	*l = out
}

// MaxErrors is how many errors of one script check and run print. Past
// it, one last line says "too many errors", as Go's compiler does: a file
// that is not a script at all (a log, a binary) would otherwise give a
// line of errors per line of it.
const MaxErrors = 10

// Truncated returns the first n errors of the sorted list and, when there
// are more, a last one saying so at the position of the next.
func (l ErrorList) Truncated(n int) ErrorList {
	if len(l) <= n {
		return l
	}
	next := l[n]
	return append(l[:n:n], &Error{File: next.File, Pos: next.Pos, Msg: "too many errors"})
}

// Err returns the list as an error, or nil when it is empty.
func (l ErrorList) Err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

// errorSink collects errors for one file.
type errorSink struct {
	file string
	errs ErrorList
}

func (s *errorSink) errorf(pos Pos, format string, args ...any) {
	s.errs = append(s.errs, &Error{File: s.file, Pos: pos, Msg: fmt.Sprintf(format, args...)})
}
