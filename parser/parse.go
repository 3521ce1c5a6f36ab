package parser

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// parser builds the AST of one script. It stops each statement at its first
// syntax error, skips to the end of the line and goes on, so that one run
// reports every line's problem.
type parser struct {
	errorSink
	l    *lexer
	tok  item // the current token, not yet consumed
	sh   *syntax.Parser
	file *File
}

// errStmt aborts the statement being parsed; the error is already recorded.
var errStmt = errors.New("bad statement")

func newParser(filename, src string) *parser {
	p := &parser{
		errorSink: errorSink{file: filename},
		l:         newLexer(src),
		sh:        syntax.NewParser(syntax.Variant(syntax.LangBash), syntax.KeepComments(true)),
		file:      &File{Name: filename},
	}
	p.next()
	return p
}

func (p *parser) pos(off int) Pos { return p.l.position(off) }

// next moves to the next DSL token.
func (p *parser) next() { p.tok = p.l.nextItem() }

// fail records "expected WHAT, found TOKEN" at the current token and aborts
// the statement. A lexing error is reported as it is.
func (p *parser) fail(what string) error {
	if p.tok.typ == itemError {
		p.errorf(p.pos(p.tok.pos), "%s", p.tok.val)
	} else {
		p.errorf(p.pos(p.tok.pos), "expected %s, found %s", what, p.tok)
	}
	return errStmt
}

// expect consumes a token of type t, or fails with "expected WHAT".
func (p *parser) expect(t itemType, what string) (item, error) {
	if p.tok.typ != t {
		return item{}, p.fail(what)
	}
	it := p.tok
	p.next()
	return it, nil
}

func (p *parser) ident(what string) (Ident, error) {
	it, err := p.expect(itemIdent, what)
	return Ident{Pos: p.pos(it.pos), Name: it.val}, err
}

// endOfStmt requires the end of the line (or file) after a statement.
func (p *parser) endOfStmt(after string) error {
	if p.tok.typ != itemNewline && p.tok.typ != itemEOF {
		return p.fail("end of line after " + after)
	}
	return nil
}

// isDecl reports whether the keyword that is the current token starts a
// declaration: it does unless an arrow or a '.' follows, which makes it an
// edge from a stage called, say, stage. The lexer is rewound after looking.
func (p *parser) isDecl() bool {
	l := p.l
	pos, start, nc := l.pos, l.start, len(l.comments)
	it := l.nextItem()
	l.pos, l.start, l.comments = pos, start, l.comments[:nc]
	return it.typ != itemArrow && it.typ != itemArrowOpen && it.typ != itemDot
}

// parseFile parses the whole script:
//
//	file = { [ stmt ] [ comment ] newline }
func (p *parser) parseFile() *File {
	for p.tok.typ != itemEOF {
		if p.tok.typ == itemNewline {
			p.next()
			continue
		}
		s, err := p.parseStmt()
		// A broken edge statement is dropped; a broken declaration is kept
		// so that its name still resolves and does not cause more errors.
		if _, edge := s.(*EdgeStmt); s != nil && (err == nil || !edge) {
			p.file.Stmts = append(p.file.Stmts, s)
		}
		if err != nil {
			p.skipLine(s)
		}
	}
	for _, c := range p.l.comments {
		p.file.Comments = append(p.file.Comments, &Comment{Pos: p.pos(c.pos), Text: c.text})
	}
	return p.file
}

// skipLine skips what is left of a bad statement. After a stage's '=' the
// rest is shell text, which may go on over more lines: it is skipped as a
// command so that its lines are not read as statements.
func (p *parser) skipLine(s Stmt) {
	_, isStage := s.(*StageDecl)
	for p.tok.typ != itemNewline && p.tok.typ != itemEOF {
		if isStage && p.tok.typ == itemAssign {
			p.scanCommand() // leaves the parser after the command
			continue
		}
		p.next()
	}
}

// declKeywords start a declaration.
var declKeywords = []string{"param", "env", "sem", "stage"}

// parseStmt parses one statement:
//
//	stmt = param | env | sem | stage | edges
func (p *parser) parseStmt() (Stmt, error) {
	if p.tok.typ == itemLBrace {
		return p.parseEdges()
	}
	if p.tok.typ != itemIdent {
		return nil, p.fail("a statement (param, env, sem, stage or edges)")
	}
	switch p.tok.val {
	case "param", "env":
		if p.isDecl() {
			return p.parseVar()
		}
	case "sem":
		if p.isDecl() {
			return p.parseSem()
		}
	case "stage":
		if p.isDecl() {
			return p.parseStage()
		}
	}
	return p.parseEdges()
}

// parseVar parses a parameter or an environment variable:
//
//	param = 'param' NAME '=' WORD
//	env   = 'env' NAME '=' WORD
//
// WORD is one shell word, parsed by mvdan.cc/sh; it may be empty.
func (p *parser) parseVar() (Stmt, error) {
	d := &VarDecl{Keyword: p.pos(p.tok.pos), Kind: p.tok.val}
	p.next()
	var err error
	if d.Name, err = p.ident("a name"); err != nil {
		return nil, err
	}
	if p.tok.typ != itemAssign {
		return d, p.fail(fmt.Sprintf("'=' after %s name", d.Kind))
	}
	w := p.l.nextWord(false)
	if w.typ == itemError {
		p.tok = w
		return d, p.fail("")
	}
	d.ValuePos, d.Text = p.pos(w.pos), w.val
	d.Value = p.shellWord(w, article(d.Kind)+" value")
	p.next()
	if p.tok.typ != itemNewline && p.tok.typ != itemEOF {
		return d, p.fail("end of line after the value (quote a value that holds blanks)")
	}
	d.EndPos = p.pos(p.tok.pos)
	return d, nil
}

// shellWord parses a word delimited by the lexer as one shell word: what
// is "a param value", "an env value" or "a dir", for messages.
func (p *parser) shellWord(w item, what string) *syntax.Word {
	if w.val == "" {
		return nil
	}
	if deep := newNestScanner().scan(w.val); deep >= 0 {
		p.shellErr(w.pos, &nestingError{off: w.pos + deep})
		return nil
	}
	var words []*syntax.Word
	err := p.sh.Words(strings.NewReader(w.val), func(sw *syntax.Word) bool {
		words = append(words, sw)
		return true
	})
	if err != nil {
		p.shellErr(w.pos, err)
		return nil
	}
	if len(words) != 1 {
		p.errorf(p.pos(w.pos), "expected one shell word, found %d in %q", len(words), w.val)
		return nil
	}
	if !p.noSubstitutions(w.pos, words[0], what) {
		return nil
	}
	return words[0]
}

// noSubstitutions reports command and process substitutions in a param,
// env or dir word. run expands these words itself, against its own
// environment, before any stage starts: there is no shell to run a
// command in, and a <( ) would have no process to read from.
func (p *parser) noSubstitutions(start int, w *syntax.Word, what string) bool {
	ok := true
	syntax.Walk(w, func(n syntax.Node) bool {
		var kind string
		switch n.(type) {
		case *syntax.CmdSubst:
			kind = "command"
		case *syntax.ProcSubst:
			kind = "process"
		default:
			return true
		}
		p.errorf(p.shellPos(start, n.Pos()), "%s substitution is not allowed in %s; ipcflow expands it itself, before any stage starts, with no shell", kind, what)
		ok = false
		return false // one error per substitution, not one per nested one
	})
	return ok
}

// parseSem parses a semaphore:
//
//	sem = 'sem' NAME '=' COUNT
func (p *parser) parseSem() (Stmt, error) {
	d := &SemDecl{Keyword: p.pos(p.tok.pos)}
	p.next()
	var err error
	if d.Name, err = p.ident("a name"); err != nil {
		return nil, err
	}
	if _, err := p.expect(itemAssign, "'=' after semaphore name"); err != nil {
		return d, err
	}
	n, err := p.expect(itemNumber, "a count after '='")
	if err != nil {
		return d, err
	}
	d.CountPos, d.Count = p.pos(n.pos), n.val
	d.EndPos = p.pos(p.tok.pos)
	return d, p.endOfStmt("the count")
}

// parseStage parses a stage:
//
//	stage   = 'stage' NAME [ '[' N ']' ] [ '(' ports ')' ] { clause } '=' COMMAND
//	ports   = port { ',' port }
//	port    = ( 'in' | 'out' ) NAME
//	clause  = 'uses' NAME { ',' NAME } | 'after' NAME { ',' NAME } | 'dir' WORD | 'native'
//	        | 'unordered' | 'merge' WORD
//	N       = DIGITS | '$' NAME | '${' NAME '}' | 'auto'
//
// COMMAND is shell text to the end of the line, and over further lines while
// its syntax is incomplete.
func (p *parser) parseStage() (Stmt, error) {
	d := &StageDecl{Keyword: p.pos(p.tok.pos)}
	p.next()
	var err error
	if d.Name, err = p.ident("a stage name"); err != nil {
		return nil, err
	}
	if p.tok.typ == itemLBrack {
		if err := p.parseReplicas(d); err != nil {
			return d, err
		}
	}
	if p.tok.typ == itemLParen {
		p.next()
		for {
			pd := &PortDecl{Pos: p.pos(p.tok.pos)}
			switch {
			case p.tok.typ == itemIdent && p.tok.val == "in":
				pd.Dir = In
			case p.tok.typ == itemIdent && p.tok.val == "out":
				pd.Dir = Out
			default:
				return d, p.fail("'in NAME' or 'out NAME' in the port list")
			}
			p.next()
			if pd.Name, err = p.ident(fmt.Sprintf("a port name after '%s'", pd.Dir)); err != nil {
				return d, err
			}
			d.Ports = append(d.Ports, pd)
			if p.tok.typ == itemComma {
				p.next()
				continue
			}
			if _, err := p.expect(itemRParen, "',' or ')' in the port list"); err != nil {
				return d, err
			}
			break
		}
	}
	for p.tok.typ == itemIdent {
		c := &Clause{Pos: p.pos(p.tok.pos), Kind: p.tok.val}
		switch c.Kind {
		case "uses", "after":
			p.next()
			if c.Names, err = p.nameList(c.Kind); err != nil {
				return d, err
			}
		case "dir":
			if err := p.clauseWord(c, "a directory after 'dir'", "a dir"); err != nil {
				return d, err
			}
		case "merge":
			if err := p.clauseWord(c, "a merge command after 'merge'", "a merge command"); err != nil {
				return d, err
			}
		case "on":
			if err := p.clauseWord(c, "a host after 'on'", "a host"); err != nil {
				return d, err
			}
		case "native", "unordered":
			p.next()
		case "restart":
			if err := p.parseRestart(c, d.Name.Name); err != nil {
				return d, err
			}
		case "limit":
			if err := p.parseLimit(c, d.Name.Name); err != nil {
				return d, err
			}
		default:
			return d, p.fail("a clause (uses, after, dir, on, native, unordered, merge, restart, limit) or '='")
		}
		d.Clauses = append(d.Clauses, c)
	}
	if p.tok.typ != itemAssign {
		return d, p.fail("'=' and a command after the stage")
	}
	start, end, script, err := p.scanCommand()
	if start == end {
		return d, p.fail("a command after '='")
	}
	d.CommandPos = p.pos(start)
	// The text is kept as it is: trimming blanks after a final backslash
	// would turn it into a line continuation.
	d.Command = p.l.input[start:end]
	d.Script = script
	if err != nil {
		p.shellErr(start, err)
	} else if len(script.Stmts) == 0 {
		p.errorf(d.CommandPos, "expected a command after '=', found a comment")
		d.Script = nil
	}
	d.EndPos = p.pos(end)
	return d, p.endOfStmt("the command")
}

// parseReplicas parses '[' N ']' after a stage's name, the current token
// being '[': N is a count, a param ($NAME or ${NAME}) or auto. It is read
// as text up to the ']' on the same line, since the DSL's tokens have no
// '$'.
func (p *parser) parseReplicas(d *StageDecl) error {
	l := p.l
	l.pos = p.tok.pos + 1
	l.skipBlanks()
	start := l.pos
	end := start
	for end < len(l.input) && l.input[end] != ']' && l.input[end] != '\n' && l.input[end] != '#' {
		end++
	}
	text := strings.TrimRight(l.input[start:end], " \t\r")
	d.ReplicasPos = p.pos(start)
	if end >= len(l.input) || l.input[end] != ']' {
		p.tok = item{itemError, start, "expected ']' after the replica count"}
		return p.fail("")
	}
	if text == "" {
		p.tok = item{itemError, start, "expected a replica count (a number, $PARAM or auto) after '['"}
		return p.fail("")
	}
	d.Replicas = text
	l.pos, l.start = end+1, end+1
	p.next()
	return nil
}

// nameList parses NAME { ',' NAME } after uses or after.
func (p *parser) nameList(clause string) ([]Ident, error) {
	var names []Ident
	for {
		id, err := p.ident(fmt.Sprintf("a name after '%s'", clause))
		if err != nil {
			return names, err
		}
		names = append(names, id)
		if p.tok.typ != itemComma {
			return names, nil
		}
		p.next()
	}
}

// scanCommand reads the shell command after a stage's '=' (the current
// token) and leaves the parser on the token after it. It returns the
// command's extent and its parse; start == end means there was no command.
func (p *parser) scanCommand() (start, end int, f *syntax.File, err error) {
	l := p.l
	l.pos = p.tok.pos + 1
	l.skipBlanks()
	start = l.pos
	end, f, err = scanShell(p.sh, l.input, start)
	l.pos, l.start = end, end
	p.next()
	return start, end, f, err
}

// scanShell finds the end of the shell command starting at input[start:]:
// the end of its line, or of further lines while the shell syntax is
// incomplete. mvdan.cc/sh's interactive mode, which tells a shell when to
// print its "> " prompt, is fed one line at a time, so finding the end is
// linear in the command's length even when a stray quote makes it run to
// the end of the file. It returns the end offset (a newline or the end of
// input) and the parse of the command. A blank rest of line gives end ==
// start.
//
// Every line is measured by a nestScanner before the shell parser reads
// it: text nested too deeply would overflow the parser's stack. A command
// that nests too deeply ends at the end of the line where it does so, with
// a *nestingError.
func scanShell(sh *syntax.Parser, input string, start int) (end int, f *syntax.File, err error) {
	r := &lineReader{input: input, pos: start, lastEnd: start, nest: newNestScanner(), scanned: start, deep: -1}
	lineEnd := r.lineEnd()
	line := input[start:lineEnd]
	if strings.TrimSpace(line) == "" {
		return start, nil, nil
	}
	if !r.measure() {
		return skipBroken(input, lineEnd), nil, &nestingError{off: r.deep}
	}
	// Most commands are one line: parse it alone first. A line that ends
	// in a backslash parses without error but goes on, so it takes the
	// long way.
	if !strings.HasSuffix(line, "\\") {
		if f, err := sh.Parse(strings.NewReader(line+"\n"), ""); err == nil {
			return lineEnd, f, nil
		}
	}
	// The loop never breaks: mvdan.cc/sh v3.14's InteractiveSeq can call
	// its yield function again after it returned false, which panics. It
	// is stopped from the reader's side instead, by an end of input.
	end = -1
	var shErr error
	for _, err := range sh.InteractiveSeq(r) {
		if end < 0 && (err != nil || !sh.Incomplete()) {
			end, shErr = r.lastEnd, err
			r.stop = true
		}
	}
	if r.deep >= 0 {
		return skipBroken(input, lineEndAt(input, r.deep)), nil, &nestingError{off: r.deep}
	}
	if shErr != nil {
		// The error's own line may not have been given whole (a long
		// line is read in pieces), or may be before the line that
		// showed it (`a |` then `)`): the command goes at least to the
		// end of both.
		if pos, _ := shellError(shErr); pos.IsValid() {
			end = max(end, lineEndAt(input, min(start+int(pos.Offset()), len(input))))
		}
		return skipBroken(input, end), nil, shErr
	}
	if end < 0 {
		end = r.lastEnd
	}
	f, err = sh.Parse(strings.NewReader(input[start:end]+"\n"), "")
	return end, f, err
}

// skipBroken returns where a command with a syntax error ends, given the
// end of the line where the shell parser gave up (a newline, or the end
// of input). The shell cannot say how far a broken command would have
// gone on (the rest of a for body, a here-document), and each of its
// lines read as a statement would give a false error. So the lines after
// it are skipped as part of it up to the first that reads as the start of
// a statement (isStmtStart), or the end of input.
func skipBroken(input string, end int) int {
	for end < len(input) {
		next := lineEndAt(input, end+1)
		if isStmtStart(input[end+1 : next]) {
			break
		}
		end = next
	}
	return end
}

// isStmtStart reports whether line reads as the start of a statement, at
// any indentation: a declaration (stage NAME, param NAME =, sem NAME =,
// env NAME = one WORD and the end of the line), or an edge (END, END.PORT
// or a {group}, then an arrow). Shell text rarely looks like that (env X=1
// alone would); env is stricter because `env X=1 cmd` is shell, and a sem
// needs its '=' because GNU parallel's `sem cmd` is. Blank and comment
// lines do not count.
func isStmtStart(line string) bool {
	l := newLexer(line)
	t := l.nextItem()
	switch t.typ {
	case itemLBrace:
		t = l.nextItem()
		for t.typ == itemIdent || t.typ == itemDot || t.typ == itemComma {
			t = l.nextItem()
		}
		if t.typ != itemRBrace {
			return false
		}
		t = l.nextItem()
		return t.typ == itemArrow || t.typ == itemArrowOpen
	case itemIdent:
	default:
		return false
	}
	kw := t.val
	switch t = l.nextItem(); t.typ {
	case itemArrow, itemArrowOpen:
		return true
	case itemDot:
		if l.nextItem().typ != itemIdent {
			return false
		}
		t = l.nextItem()
		return t.typ == itemArrow || t.typ == itemArrowOpen
	case itemIdent:
		return isDeclHead(l, kw)
	}
	return false
}

// isDeclHead reports whether what follows "KEYWORD NAME" in l makes the
// line a declaration of that keyword.
func isDeclHead(l *lexer, kw string) bool {
	t := l.nextItem()
	switch kw {
	case "param", "sem":
		return t.typ == itemAssign
	case "env":
		if t.typ != itemAssign || l.nextWord(false).typ != itemWord {
			return false
		}
		t = l.nextItem()
		return t.typ == itemNewline || t.typ == itemEOF
	case "stage":
		return true // even a broken head: its error is worth reporting
	}
	return false
}

// lineEndAt returns the offset of the newline that ends the line holding
// off, or len(input).
func lineEndAt(input string, off int) int {
	if i := strings.IndexByte(input[off:], '\n'); i >= 0 {
		return off + i
	}
	return len(input)
}

// nestingError is shell text nested too deeply to be parsed; off is the
// offset in the script where it goes past maxNesting.
type nestingError struct{ off int }

func (e *nestingError) Error() string {
	return fmt.Sprintf("shell nesting deeper than %d levels", maxNesting)
}

// shellErr reports an error in shell text that starts at offset start of
// the script: mvdan.cc/sh's syntax error, or a nestingError found before
// the text was parsed.
func (p *parser) shellErr(start int, err error) {
	var ne *nestingError
	if errors.As(err, &ne) {
		p.errorf(p.pos(ne.off), "%v", err)
		return
	}
	pos, msg := shellError(err)
	p.errorf(p.shellPos(start, pos), "shell syntax error: %s", msg)
}

// lineReader gives the shell parser one line per Read, so that it cannot
// read past the line that completes a command; lastEnd is the end of the
// last whole line given (the offset of its newline, or of the end of input).
type lineReader struct {
	input   string
	pos     int // next byte to give
	lastEnd int
	eol     bool // a newline was made up for a last line without one
	stop    bool // the command is complete: give no more
	nest    *nestScanner
	scanned int // the nestScanner has measured input up to here
	deep    int // where the text nests too deeply, or -1
}

// measure runs the nestScanner over the line at r.pos (newline included)
// unless it has seen it already. It returns false, with r.deep set, when
// the line nests too deeply to be given to the shell parser.
func (r *lineReader) measure() bool {
	if r.pos < r.scanned {
		return true
	}
	end := r.lineEnd()
	if end < len(r.input) {
		end++
	}
	if k := r.nest.scan(r.input[r.pos:end]); k >= 0 {
		r.deep = r.pos + k
		return false
	}
	r.scanned = end
	return true
}

func (r *lineReader) lineEnd() int {
	if i := strings.IndexByte(r.input[r.pos:], '\n'); i >= 0 {
		return r.pos + i
	}
	return len(r.input)
}

func (r *lineReader) Read(p []byte) (int, error) {
	if r.stop {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if r.pos >= len(r.input) {
		if !r.eol && r.lastEnd == len(r.input) && !strings.HasSuffix(r.input, "\n") {
			// The last line has no newline: give one, so that the parser
			// sees its end as it does every other line's.
			r.eol = true
			p[0] = '\n'
			return 1, nil
		}
		return 0, io.EOF
	}
	if !r.measure() {
		r.stop = true
		return 0, io.EOF
	}
	end := r.lineEnd()
	if end < len(r.input) {
		end++ // include the newline
	}
	n := copy(p, r.input[r.pos:end])
	r.pos += n
	if r.pos == end {
		r.lastEnd = end
		if end > 0 && r.input[end-1] == '\n' {
			r.lastEnd = end - 1
		}
	}
	return n, nil
}

// parseEdges parses an edge statement:
//
//	edges  = ENDS ARROW ENDS { ARROW ENDS }
//	ENDS   = END | '{' END { ',' END } '}'
//	END    = STAGE | STAGE '.' PORT | 'stdin' | 'stdout' | 'stderr'
//	ARROW  = '->' | '-[' TYPE { OPTION } ']->'
//	OPTION = NAME '=' VALUE | WORD
//
// VALUE is one shell word, expanded by run as a param's value is.
func (p *parser) parseEdges() (Stmt, error) {
	s := &EdgeStmt{}
	ends, err := p.parseEnds()
	if err != nil {
		return nil, err
	}
	s.Ends = append(s.Ends, ends)
	for {
		if p.tok.typ != itemArrow && p.tok.typ != itemArrowOpen {
			if len(s.Arrows) == 0 {
				if p.fatArrow() {
					return s, errStmt
				}
				if len(ends.List) == 1 && !ends.Braced && ends.List[0].Port == nil && p.tok.typ == itemAssign {
					p.errorf(ends.Pos, "expected a statement, found '%s =' (a declaration starts with param, env, sem or stage)", ends.List[0].Stage.Name)
					return s, errStmt
				}
				// `stag b = ...`: a misspelt keyword before a name.
				if kw := Closest(ends.List[0].Stage.Name, declKeywords); len(ends.List) == 1 && !ends.Braced &&
					ends.List[0].Port == nil && kw != "" && p.tok.typ == itemIdent {
					p.errorf(ends.Pos, "expected a statement, found '%s %s' (did you mean %q?)", ends.List[0].Stage.Name, p.tok.val, kw)
					return s, errStmt
				}
				return s, p.fail("'->' or '-[' after the stage")
			}
			if p.fatArrow() {
				return s, errStmt
			}
			break
		}
		a, err := p.parseArrow()
		if err != nil {
			return s, err
		}
		s.Arrows = append(s.Arrows, a)
		ends, err := p.parseEnds()
		if err != nil {
			return s, err
		}
		s.Ends = append(s.Ends, ends)
	}
	s.EndPos = p.pos(p.tok.pos)
	return s, p.endOfStmt("the edge")
}

// fatArrow reports, and records an error for, a `=>` where an arrow is
// expected: the arrow of other languages (and of a tired hand) for `->`.
func (p *parser) fatArrow() bool {
	if p.tok.typ != itemAssign || !strings.HasPrefix(p.l.input[p.tok.pos:], "=>") {
		return false
	}
	p.errorf(p.pos(p.tok.pos), "expected '->' or '-[' between stages, found '=>' (did you mean \"->\"?)")
	return true
}

// parseEnds parses ENDS.
func (p *parser) parseEnds() (*Ends, error) {
	e := &Ends{Pos: p.pos(p.tok.pos)}
	if p.tok.typ != itemLBrace {
		ref, err := p.parseEnd()
		if err != nil {
			return nil, err
		}
		e.List = []*EndRef{ref}
		return e, nil
	}
	e.Braced = true
	p.next()
	for {
		ref, err := p.parseEnd()
		if err != nil {
			return nil, err
		}
		e.List = append(e.List, ref)
		if p.tok.typ == itemComma {
			p.next()
			continue
		}
		if _, err := p.expect(itemRBrace, "',' or '}' in the group"); err != nil {
			return nil, err
		}
		return e, nil
	}
}

// parseEnd parses END.
func (p *parser) parseEnd() (*EndRef, error) {
	id, err := p.ident("a stage name, stdin, stdout or stderr")
	if err != nil {
		return nil, err
	}
	ref := &EndRef{Stage: id}
	if p.tok.typ == itemDot {
		p.next()
		port, err := p.ident(fmt.Sprintf("a port name after '%s.'", id.Name))
		if err != nil {
			return nil, err
		}
		ref.Port = &port
	}
	return ref, nil
}

// parseArrow parses ARROW.
func (p *parser) parseArrow() (*Arrow, error) {
	a := &Arrow{Pos: p.pos(p.tok.pos)}
	if p.tok.typ == itemArrow {
		p.next()
		return a, nil
	}
	a.Typed = true
	p.next()
	var err error
	if a.Type, err = p.ident("an edge type after '-['"); err != nil {
		return nil, err
	}
	for p.tok.typ != itemArrowClose {
		if p.tok.typ != itemIdent {
			return nil, p.fail("an option NAME=VALUE or ']->'")
		}
		o := &Option{Pos: p.pos(p.tok.pos)}
		name := p.tok
		p.next()
		if p.tok.typ == itemAssign {
			v := p.l.nextValue()
			if v.typ == itemError {
				p.tok = v
				return nil, p.fail("")
			}
			if v.val == "" {
				p.tok = v
				p.next()
				return nil, p.fail(fmt.Sprintf("a value after '%s='", name.val))
			}
			o.Name, o.ValuePos, o.Raw = name.val, p.pos(v.pos), v.val
			// A word with a syntax error is reported here and left
			// without Word; the statement goes on.
			if o.Word = p.shellWord(v, "an option value"); o.Word != nil {
				o.Value, _ = LiteralWord(o.Word)
			}
			p.next()
		} else {
			o.ValuePos, o.Raw, o.Value = o.Pos, name.val, name.val
		}
		a.Options = append(a.Options, o)
	}
	p.next()
	return a, nil
}

// shellError takes the position and message out of a mvdan.cc/sh error.
func shellError(err error) (syntax.Pos, string) {
	var pe syntax.ParseError
	if errors.As(err, &pe) {
		return pe.Pos, pe.Text
	}
	var le syntax.LangError
	if errors.As(err, &le) {
		msg := le.Error()
		if i := strings.Index(msg, ": "); i >= 0 {
			msg = msg[i+2:]
		}
		return le.Pos, msg
	}
	return syntax.Pos{}, err.Error()
}

// shellPos turns a position inside shell text that was parsed on its own,
// starting at offset start of the script, into a position in the script.
// It goes by the byte offset: mvdan.cc/sh's line and column stop counting
// past 262143 lines and 16383 columns (syntax.Pos packs both in 32 bits),
// while its offset is exact.
func (p *parser) shellPos(start int, sp syntax.Pos) Pos {
	off := sp.Offset()
	if off == 0 && !sp.IsValid() {
		return p.pos(start)
	}
	return p.pos(min(start+int(off), len(p.l.input)))
}

// clauseWord reads the shell word a clause takes (`dir WORD`, `merge
// WORD`) into c; missing is what the error says was expected, what names
// the word in shellWord's errors.
func (p *parser) clauseWord(c *Clause, missing, what string) error {
	w := p.l.nextWord(true)
	if w.typ == itemError {
		p.tok = w
		return p.fail("")
	}
	if w.val == "" {
		p.next()
		return p.fail(missing)
	}
	c.WordPos, c.Text = p.pos(w.pos), w.val
	c.Word = p.shellWord(w, what)
	p.next()
	return nil
}
