package parser

import "mvdan.cc/sh/v3/syntax"

// The AST is the script as written: every statement with its positions,
// and the comments. fmt prints it back; resolve turns it into a Graph.

// File is a parsed script.
type File struct {
	Name     string
	Stmts    []Stmt
	Comments []*Comment // in file order
}

// Comment is a '#' comment (the '#!' line included) outside stage commands;
// comments inside a command belong to its shell AST.
type Comment struct {
	Pos  Pos
	Text string // from '#' to the end of the line
}

// Stmt is one statement: *VarDecl, *SemDecl, *StageDecl or *EdgeStmt.
type Stmt interface {
	Pos() Pos // the first byte
	End() Pos // the line and column just after the last byte
}

// Ident is a name as written.
type Ident struct {
	Pos  Pos
	Name string
}

// VarDecl is `param NAME = WORD` or `env NAME = WORD`.
type VarDecl struct {
	Keyword  Pos
	Kind     string // "param" or "env"
	Name     Ident
	ValuePos Pos
	Text     string       // the word as written; "" when empty
	Value    *syntax.Word // nil when empty or unparsable
	EndPos   Pos
}

// SemDecl is `sem NAME = COUNT`.
type SemDecl struct {
	Keyword  Pos
	Name     Ident
	CountPos Pos
	Count    string // as written
	EndPos   Pos
}

// StageDecl is `stage NAME [ '[' N ']' ] [ '(' PORTS ')' ] { CLAUSE } = COMMAND`.
type StageDecl struct {
	Keyword     Pos
	Name        Ident
	Replicas    string // N as written (a count, $PARAM, auto); "" when not written
	ReplicasPos Pos
	Ports       []*PortDecl
	Clauses     []*Clause
	Command     string // from after '=' (blanks skipped) to its end, newlines included
	CommandPos  Pos
	Script      *syntax.File // nil when the command does not parse
	EndPos      Pos
}

// PortDecl is `in NAME` or `out NAME` in a stage's parentheses.
type PortDecl struct {
	Pos  Pos
	Dir  Direction
	Name Ident
}

// Clause is `uses NAME, ...`, `after NAME, ...`, `dir WORD`, `on WORD`,
// `native`, `unordered`, `merge WORD`, `restart ...` or `limit ...`
// (supervise.go).
type Clause struct {
	Pos     Pos
	Kind    string  // "uses", "after", "dir", "on", "native", "unordered", "merge", "restart", "limit"
	Names   []Ident // uses, after
	WordPos Pos     // dir, on, merge
	Text    string  // dir, on, merge: the word as written
	Word    *syntax.Word
	Args    []ClauseArg // restart (WHEN first), limit
}

// ClauseArg is one word of a restart clause (WHEN, or `max N`: Name max,
// Value N) or one RESOURCE=VALUE of a limit clause, as written.
type ClauseArg struct {
	Pos      Pos
	Name     string
	ValuePos Pos
	Value    string // "" for WHEN
}

// EdgeStmt is `ENDS ARROW ENDS { ARROW ENDS }`: len(Ends) == len(Arrows)+1.
type EdgeStmt struct {
	Ends   []*Ends
	Arrows []*Arrow
	EndPos Pos
}

// Ends is `END` or `'{' END { ',' END } '}'`.
type Ends struct {
	Pos    Pos
	Braced bool
	List   []*EndRef
}

// EndRef is `STAGE`, `STAGE.PORT`, `stdin`, `stdout` or `stderr`.
type EndRef struct {
	Stage Ident
	Port  *Ident // nil when not written
}

// Arrow is `->` or `-[TYPE { OPTION } ]->`.
type Arrow struct {
	Pos     Pos
	Typed   bool
	Type    Ident
	Options []*Option
}

// Option is `NAME=VALUE`, or a bare word (socket's `tcp`). VALUE is a
// shell word, expanded by run as a param's value is (SPEC 4).
type Option struct {
	Pos      Pos
	Name     string // "" for a bare word
	ValuePos Pos
	Raw      string       // the value as written, quotes included
	Value    string       // the value when it needs no expansion, unquoted; else ""
	Word     *syntax.Word // NAME=VALUE: the value parsed; nil when it does not parse
}

func (d *VarDecl) Pos() Pos   { return d.Keyword }
func (d *VarDecl) End() Pos   { return d.EndPos }
func (d *SemDecl) Pos() Pos   { return d.Keyword }
func (d *SemDecl) End() Pos   { return d.EndPos }
func (d *StageDecl) Pos() Pos { return d.Keyword }
func (d *StageDecl) End() Pos { return d.EndPos }
func (s *EdgeStmt) Pos() Pos  { return s.Ends[0].Pos }
func (s *EdgeStmt) End() Pos  { return s.EndPos }
