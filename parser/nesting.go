package parser

import "strings"

// maxNesting is how deeply shell text may nest. mvdan.cc/sh parses by
// recursive descent, a few kilobytes of goroutine stack per level: about
// 200,000 levels of `(` exhaust Go's 1 GB stack, and a stack overflow is a
// fatal error that no recover catches. 100,000 levels still parse; 10,000
// is far below that, and far above anything written by hand.
const maxNesting = 10000

// nestScanner measures, in one cheap pass and before mvdan.cc/sh sees
// the text, how deeply shell text nests. It over-estimates rather than
// under-estimates, but only by a little for real commands. It counts:
//
//   - brackets: ( $( <( { ${ [ and the arithmetic $(( and ((, each closed
//     only by its own closer; a [ in arithmetic is an array index, whose
//     inside is arithmetic again, and one in code (a[i]=, a glob, [[) a
//     level whose inside is still scanned as code;
//   - quotes: "..." and `...`, which nest inside $( ); the brackets inside
//     '...' count as well (a here-document's body may look quoted), but
//     cannot close a bracket opened before the quote;
//   - compound commands: if ... fi, while, until, for, select ... done,
//     case ... esac;
//   - what nests with no closer: runs of prefixes (time, coproc, !,
//     function NAME, NAME()) and, inside arithmetic, the unary and
//     right-associative operators (! ~ - + = ? *, one level each).
//
// A # comment is skipped to the end of its line. The scanner keeps its
// state from one call of scan to the next, so a command can be fed to it
// line by line.
type nestScanner struct {
	frames  []nestFrame
	depth   int  // the sum of the frames' weights, and run
	squote  int  // index of the open '...' frame, or -1
	run     int  // prefixes in a row, each a level of nesting
	escape  bool // the byte before was an unquoted backslash
	comment bool // in a # comment, up to the end of the line
	prev    byte // the byte before the one being scanned (0 at the start)
}

// A nestFrame is one open bracket, quote or compound command.
type nestFrame struct {
	kind   byte   // the opener: ( { [ " ' ` k (keyword), A ($(( or ((), a (( in arithmetic), i ([ in arithmetic)
	end    string // for k: the word that closes it (fi, done, esac)
	weight int    // the levels it stands for
}

func newNestScanner() *nestScanner { return &nestScanner{squote: -1} }

// scan goes on over text and returns the index in text of the byte at
// which the nesting first goes deeper than maxNesting, or -1.
func (s *nestScanner) scan(text string) int {
	for i := 0; i < len(text); i++ {
		at := i
		switch c := text[i]; {
		case s.comment:
			s.comment = c != '\n'
		case s.escape:
			s.escape = false
		case s.squote >= 0:
			s.single(c)
		default:
			switch s.top().kind {
			case '"':
				i = s.double(text, i)
			case 'A', 'a', 'i':
				i = s.arith(text, i)
			default:
				i = s.code(text, i)
			}
		}
		s.prev = text[i]
		if s.depth > maxNesting {
			return at
		}
	}
	return -1
}

func (s *nestScanner) top() nestFrame {
	if len(s.frames) == 0 {
		return nestFrame{}
	}
	return s.frames[len(s.frames)-1]
}

func (s *nestScanner) push(kind byte, end string) {
	w := 1
	if kind == '\'' {
		w = 0 // the quote itself is no level in the parser
	}
	s.frames = append(s.frames, nestFrame{kind: kind, end: end, weight: w})
	s.depth += w
}

func (s *nestScanner) pop() {
	if len(s.frames) == 0 {
		return
	}
	s.depth -= s.top().weight
	s.frames = s.frames[:len(s.frames)-1]
}

// closeKind pops the innermost frame if it is of kind, and ignores the
// closer otherwise (a ) after a case pattern, a } that is a word).
func (s *nestScanner) closeKind(kind byte) {
	if len(s.frames) > 0 && s.top().kind == kind && len(s.frames)-1 != s.squote {
		s.pop()
	}
}

// endRun ends a run of prefixes: whatever follows them is their command.
func (s *nestScanner) endRun() {
	s.depth -= s.run
	s.run = 0
}

// single scans a byte inside '...'.
func (s *nestScanner) single(c byte) {
	switch c {
	case '\'':
		for len(s.frames) > s.squote {
			s.pop()
		}
		s.squote = -1
	case '(', '{':
		s.push(c, "")
	case ')':
		s.closeKind('(')
	case '}':
		s.closeKind('{')
	}
}

// dollar scans what may follow a '$' outside single quotes: $(( $( ${.
func (s *nestScanner) dollar(text string, i int) int {
	switch {
	case strings.HasPrefix(text[i:], "$(("):
		s.push('A', "")
		return i + 2
	case strings.HasPrefix(text[i:], "$("):
		s.push('(', "")
		return i + 1
	case strings.HasPrefix(text[i:], "${"):
		s.push('{', "")
		return i + 1
	}
	return i
}

// double scans a byte inside "...".
func (s *nestScanner) double(text string, i int) int {
	switch text[i] {
	case '"':
		s.pop()
	case '\\':
		s.escape = true
	case '`':
		s.push('`', "")
	case '$':
		return s.dollar(text, i)
	}
	return i
}

// arith scans a byte inside $(( )) or (( )).
func (s *nestScanner) arith(text string, i int) int {
	switch c := text[i]; c {
	case '(':
		s.push('a', "")
	case ')':
		if s.top().kind == 'a' {
			s.pop()
		} else if strings.HasPrefix(text[i:], "))") {
			s.pop()
			return i + 1
		}
	case '$':
		return s.dollar(text, i)
	case '[':
		s.push('i', "") // an array index: arithmetic again
	case ']':
		s.closeKind('i')
	case '"', '`':
		s.push(c, "")
	case '\\':
		s.escape = true
	case '!', '~', '-', '+', '=', '?', '*':
		s.frames[len(s.frames)-1].weight++
		s.depth++
	}
	return i
}

// code scans a byte of shell code.
func (s *nestScanner) code(text string, i int) int {
	c := text[i]
	if c == ' ' || c == '\t' {
		return i
	}
	atWord := s.prev == 0 || strings.IndexByte(" \t\r\n;&|(){}", s.prev) >= 0
	if atWord {
		if end, ok := s.prefix(text, i); ok {
			s.run++
			s.depth++
			return end
		}
	}
	s.endRun()
	switch {
	case c == '\\':
		s.escape = true
	case c == '\'':
		s.squote = len(s.frames)
		s.push('\'', "")
	case c == '"':
		s.push('"', "")
	case c == '`':
		if s.top().kind == '`' {
			s.pop()
		} else {
			s.push('`', "")
		}
	case c == '#' && atWord:
		s.comment = true
	case c == '$':
		return s.dollar(text, i)
	case c == '(' && atWord && strings.HasPrefix(text[i:], "(("):
		s.push('A', "")
		return i + 1
	case c == '(' || c == '{':
		s.push(c, "")
	case c == ')':
		s.closeKind('(')
	case c == '}':
		s.closeKind('{')
	case c == '[':
		s.push('[', "")
	case c == ']':
		s.closeKind('[')
	case atWord && isWordByte(c):
		return s.keyword(text, i)
	}
	return i
}

// prefix reports whether a prefix starts at text[i] (time, coproc, !,
// function NAME, NAME() or NAME ()), and the index of its last byte.
func (s *nestScanner) prefix(text string, i int) (int, bool) {
	if text[i] == '!' {
		return i, i+1 == len(text) || isBlank(text[i+1])
	}
	w := wordAt(text, i)
	if w == "" {
		return i, false
	}
	end := i + len(w)
	switch {
	case (w == "time" || w == "coproc") && endsWord(text, end):
		return end - 1, true
	case w == "function" && endsWord(text, end):
		j := skipBlanks(text, end)
		if name := wordAt(text, j); name != "" {
			return j + len(name) - 1, true
		}
		return end - 1, true
	}
	if j := skipBlanks(text, end); strings.HasPrefix(text[j:], "(") {
		if k := skipBlanks(text, j+1); strings.HasPrefix(text[k:], ")") {
			return k, true
		}
	}
	return i, false
}

// keyword scans a word at text[i] and opens or closes a compound command.
func (s *nestScanner) keyword(text string, i int) int {
	w := wordAt(text, i)
	end := i + len(w)
	if !endsWord(text, end) {
		return end - 1
	}
	switch w {
	case "if":
		s.push('k', "fi")
	case "while", "until", "for", "select":
		s.push('k', "done")
	case "case":
		s.push('k', "esac")
	case "fi", "done", "esac":
		if t := s.top(); t.kind == 'k' && t.end == w {
			s.pop()
		}
	}
	return end - 1
}

// wordAt returns the run of name bytes at text[i].
func wordAt(text string, i int) string {
	j := i
	for j < len(text) && isWordByte(text[j]) {
		j++
	}
	return text[i:j]
}

// endsWord reports whether a shell word ends at text[i].
func endsWord(text string, i int) bool {
	return i == len(text) || strings.IndexByte(" \t\r\n;&|()<>", text[i]) >= 0
}

func skipBlanks(text string, i int) int {
	for i < len(text) && isBlank(text[i]) {
		i++
	}
	return i
}

func isBlank(c byte) bool    { return c == ' ' || c == '\t' }
func isWordByte(c byte) bool { return isLetter(c) || isDigit(c) }
