package parser

import (
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// The lexer is hand-written in the style of text/template/parse/lex.go: a
// state function scans one kind of thing and returns the next state; a state
// that emits an item returns nil. It is pulled by the parser one item at a
// time, which lets the parser pick the mode for what comes next: the script
// is DSL tokens up to a stage's '=', and shell text after it, and a
// param's value is one shell word.

// itemType identifies the kind of a lexed item.
type itemType int

const (
	itemError      itemType = iota // a lexing error; val is the message
	itemEOF                        // end of input
	itemNewline                    // end of a line: the end of a statement
	itemIdent                      // a name or keyword
	itemNumber                     // decimal digits
	itemAssign                     // =
	itemComma                      // ,
	itemDot                        // .
	itemLBrace                     // {
	itemRBrace                     // }
	itemLParen                     // (
	itemRParen                     // )
	itemLBrack                     // [
	itemRBrack                     // ]
	itemArrow                      // ->
	itemArrowOpen                  // -[
	itemArrowClose                 // ]->
	itemWord                       // a shell word, or an option value, as written
)

var itemNames = map[itemType]string{
	itemEOF:        "end of file",
	itemNewline:    "end of line",
	itemAssign:     "'='",
	itemComma:      "','",
	itemDot:        "'.'",
	itemLBrace:     "'{'",
	itemRBrace:     "'}'",
	itemLParen:     "'('",
	itemRParen:     "')'",
	itemLBrack:     "'['",
	itemRBrack:     "']'",
	itemArrow:      "'->'",
	itemArrowOpen:  "'-['",
	itemArrowClose: "']->'",
}

// item is one token: its type, its byte offset in the input and its text.
type item struct {
	typ itemType
	pos int
	val string
}

// String describes the item for "found ..." in error messages.
func (i item) String() string {
	switch i.typ {
	case itemIdent:
		return fmt.Sprintf("'%s'", i.val)
	case itemNumber:
		return fmt.Sprintf("number %s", i.val)
	case itemWord:
		return fmt.Sprintf("'%s'", i.val)
	case itemError:
		return i.val
	}
	return itemNames[i.typ]
}

// comment is a '#' comment, kept for fmt.
type comment struct {
	pos  int
	text string // from '#' to the end of the line, without the newline
}

type stateFn func(*lexer) stateFn

// lexer holds the state of the scanner.
type lexer struct {
	input    string
	start    int // start of the item being scanned
	pos      int // current position
	item     item
	lines    []int // offset of the first byte of each line
	comments []comment
	stopEq   bool   // lexWord: an unquoted '=' ends the word (dir WORD = ...)
	stopBrk  bool   // lexWord: an unquoted ']' ends the word (an option value)
	what     string // what lexWord scans, for its errors: "word", "option value"
}

func newLexer(input string) *lexer {
	l := &lexer{input: input, lines: make([]int, 1, 1+strings.Count(input, "\n"))}
	for i := 0; i < len(input); i++ {
		if input[i] == '\n' {
			l.lines = append(l.lines, i+1)
		}
	}
	return l
}

// position turns a byte offset into a 1-based line and byte column.
func (l *lexer) position(off int) Pos {
	line := sort.Search(len(l.lines), func(i int) bool { return l.lines[i] > off }) - 1
	if line < 0 {
		line = 0
	}
	return Pos{Line: line + 1, Col: off - l.lines[line] + 1}
}

// lineEnd returns the offset of the newline ending the line holding off, or
// len(input).
func (l *lexer) lineEnd(off int) int {
	if i := strings.IndexByte(l.input[off:], '\n'); i >= 0 {
		return off + i
	}
	return len(l.input)
}

func (l *lexer) peek() byte {
	if l.pos < len(l.input) {
		return l.input[l.pos]
	}
	return 0
}

func (l *lexer) emit(t itemType) stateFn {
	l.item = item{t, l.start, l.input[l.start:l.pos]}
	l.start = l.pos
	return nil
}

func (l *lexer) errorf(format string, args ...any) stateFn {
	l.item = item{itemError, l.start, fmt.Sprintf(format, args...)}
	l.start = l.pos
	return nil
}

// run runs state functions from state until one emits an item.
func (l *lexer) run(state stateFn) item {
	for state != nil {
		state = state(l)
	}
	return l.item
}

// nextItem returns the next DSL token.
func (l *lexer) nextItem() item { return l.run(lexDSL) }

// nextWord returns the next shell word (a param or env value, a dir), or an
// empty itemWord when the line ends first. With stopEq an unquoted '=' ends
// the word.
func (l *lexer) nextWord(stopEq bool) item {
	l.stopEq, l.stopBrk, l.what = stopEq, false, "word"
	return l.run(lexWordStart)
}

// nextValue returns the next option value inside '-[ ]->': one shell
// word, which an unquoted ']' also ends.
func (l *lexer) nextValue() item {
	l.stopEq, l.stopBrk, l.what = false, true, "option value"
	return l.run(lexValue)
}

// skipBlanks skips spaces, tabs, carriage returns and backslash-newline
// continuations.
func (l *lexer) skipBlanks() {
	for l.pos < len(l.input) {
		switch c := l.input[l.pos]; {
		case c == ' ' || c == '\t' || c == '\r':
			l.pos++
		case c == '\\' && strings.HasPrefix(l.input[l.pos+1:], "\n"):
			l.pos += 2
		case c == '\\' && strings.HasPrefix(l.input[l.pos+1:], "\r\n"):
			l.pos += 3
		default:
			l.start = l.pos
			return
		}
	}
	l.start = l.pos
}

// lexDSL scans the next token of the statement language.
func lexDSL(l *lexer) stateFn {
	l.skipBlanks()
	if l.pos >= len(l.input) {
		return l.emit(itemEOF)
	}
	c := l.input[l.pos]
	switch {
	case c == '\n':
		l.pos++
		return l.emit(itemNewline)
	case c == '#':
		return lexComment
	case isLetter(c):
		return lexIdent
	case c >= '0' && c <= '9':
		return lexNumber
	case c == '-':
		return lexArrow
	case c == ']':
		if strings.HasPrefix(l.input[l.pos:], "]->") {
			l.pos += 3
			return l.emit(itemArrowClose)
		}
		l.pos++
		return l.emit(itemRBrack)
	}
	if t, ok := punct[c]; ok {
		l.pos++
		return l.emit(t)
	}
	if c == 0 {
		l.pos++
		return l.errorf(errNUL)
	}
	r, n := utf8.DecodeRuneInString(l.input[l.pos:])
	l.pos += n
	return l.errorf("unexpected character %q", r)
}

var punct = map[byte]itemType{
	'=': itemAssign, ',': itemComma, '.': itemDot, '{': itemLBrace, '}': itemRBrace,
	'(': itemLParen, ')': itemRParen, '[': itemLBrack,
}

// lexComment scans a '#' comment up to the end of the line and keeps it.
func lexComment(l *lexer) stateFn {
	end := l.lineEnd(l.pos)
	l.comments = append(l.comments, comment{pos: l.pos, text: strings.TrimRight(l.input[l.pos:end], "\r")})
	l.pos = end
	l.start = end
	return lexDSL
}

// lexIdent scans a name: [A-Za-z_][A-Za-z0-9_]*.
func lexIdent(l *lexer) stateFn {
	for l.pos < len(l.input) && (isLetter(l.input[l.pos]) || isDigit(l.input[l.pos])) {
		l.pos++
	}
	return l.emit(itemIdent)
}

// lexNumber scans decimal digits. Letters glued to them ("4x") are part of
// the item, so that the parser reports the whole bad number.
func lexNumber(l *lexer) stateFn {
	for l.pos < len(l.input) && (isLetter(l.input[l.pos]) || isDigit(l.input[l.pos])) {
		l.pos++
	}
	return l.emit(itemNumber)
}

// lexArrow scans '->' or '-['.
func lexArrow(l *lexer) stateFn {
	switch {
	case strings.HasPrefix(l.input[l.pos:], "->"):
		l.pos += 2
		return l.emit(itemArrow)
	case strings.HasPrefix(l.input[l.pos:], "-["):
		l.pos += 2
		return l.emit(itemArrowOpen)
	}
	l.pos++
	return l.errorf("expected '->' or '-[' after '-'")
}

// lexWordStart skips blanks before a shell word; a line that ends (or a
// comment that starts) first gives an empty word.
func lexWordStart(l *lexer) stateFn {
	l.skipBlanks()
	if c := l.peek(); l.pos >= len(l.input) || c == '\n' || c == '#' {
		return l.emit(itemWord)
	}
	return lexWord
}

// lexWord scans one shell word: quotes, escapes, $( ), ${ } and backquotes
// may hold blanks; an unquoted blank or newline ends it. The word is only
// delimited here; mvdan.cc/sh parses it.
func lexWord(l *lexer) stateFn {
	for l.pos < len(l.input) {
		c := l.input[l.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			return l.emit(itemWord)
		case c == '=' && l.stopEq, c == ']' && l.stopBrk:
			return l.emit(itemWord)
		case c == '\\':
			if strings.HasPrefix(l.input[l.pos+1:], "\n") {
				return l.emit(itemWord)
			}
			if l.pos+1 == len(l.input) {
				l.pos++
				return l.errorf("expected a character after '\\', found end of file")
			}
			l.pos += 2
		case c == '\'' || c == '"' || c == '`':
			if !l.skipQuoted(c) {
				return l.errorf("unterminated quote %c in %s", c, l.what)
			}
		case c == '$' && strings.HasPrefix(l.input[l.pos+1:], "("):
			l.pos++
			if !l.skipNested('(', ')') {
				return l.errorf("unterminated '$(' in %s", l.what)
			}
		case c == '$' && strings.HasPrefix(l.input[l.pos+1:], "{"):
			l.pos++
			if !l.skipNested('{', '}') {
				return l.errorf("unterminated '${' in %s", l.what)
			}
		default:
			l.pos++
		}
	}
	return l.emit(itemWord)
}

// skipQuoted moves past a quoted string starting at l.pos (the quote q).
func (l *lexer) skipQuoted(q byte) bool {
	l.pos++
	for l.pos < len(l.input) {
		c := l.input[l.pos]
		switch {
		case c == q:
			l.pos++
			return true
		case c == '\\' && q != '\'':
			l.pos += 2
		default:
			l.pos++
		}
	}
	l.pos = len(l.input)
	return false
}

// skipNested moves past a bracketed group starting at l.pos (the opener),
// counting nested groups and skipping quoted strings inside.
func (l *lexer) skipNested(open, close byte) bool {
	depth := 0
	for l.pos < len(l.input) {
		c := l.input[l.pos]
		switch {
		case c == open:
			depth++
			l.pos++
		case c == close:
			depth--
			l.pos++
			if depth == 0 {
				return true
			}
		case c == '\'' || c == '"' || c == '`':
			if !l.skipQuoted(c) {
				return false
			}
		case c == '\\':
			l.pos += 2
		default:
			l.pos++
		}
	}
	l.pos = len(l.input)
	return false
}

// lexValue scans an option value inside '-[ ]->': a shell word as
// lexWord scans it, which an unquoted blank or ']' ends ('…', "…" or a
// backslash for a value that holds them).
func lexValue(l *lexer) stateFn {
	l.skipBlanks()
	return lexWord
}

func isLetter(c byte) bool { return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
