package parser

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// Format prints a parsed script in the canonical layout:
//
//   - one statement per line, one space around '=', arrows and after commas;
//   - '=' aligned in runs of consecutive declarations of one kind (param,
//     env, sem or stage lines with no blank or comment line between them);
//   - comments kept where they were: on their own line, or after a statement;
//   - runs of blank lines cut to one, none at the start or the end;
//   - stage commands printed by mvdan.cc/sh's printer, kept on one line
//     when they were written on one line.
//
// Format(ParseAST(Format(f))) == Format(f), and the result yields the same
// graph as f.
func Format(f *File) []byte {
	fm := &formatter{
		sh:    syntax.NewParser(syntax.Variant(syntax.LangBash), syntax.KeepComments(true)),
		plain: syntax.NewParser(syntax.Variant(syntax.LangBash)),
	}
	return fm.file(f)
}

type formatter struct {
	sh    *syntax.Parser // keeps comments: for commands as printed
	plain *syntax.Parser // drops them: to compare what commands do
}

// entry is one output unit: a statement (with its trailing comment, if
// any) or a comment on its own line.
type entry struct {
	first, last int // lines in the source
	stmt        Stmt
	comment     *Comment // an own-line comment when stmt is nil
	trailing    *Comment // a comment after the statement, on its last line
	head, tail  string   // printed: before '=' (for alignment) and from '='
}

func (fm *formatter) file(f *File) []byte {
	entries := make([]*entry, 0, len(f.Stmts)+len(f.Comments))
	lastLine := map[int]*entry{}
	for _, s := range f.Stmts {
		e := &entry{first: s.Pos().Line, last: s.End().Line, stmt: s}
		entries = append(entries, e)
		lastLine[e.last] = e
	}
	for _, c := range f.Comments {
		if e := lastLine[c.Pos.Line]; e != nil && e.trailing == nil {
			e.trailing = c
			continue
		}
		entries = append(entries, &entry{first: c.Pos.Line, last: c.Pos.Line, comment: c})
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].first < entries[j].first })
	for _, e := range entries {
		if e.stmt != nil {
			e.head, e.tail = fm.stmt(e.stmt)
		}
	}
	fm.align(entries)

	var b bytes.Buffer
	prevLast := 0
	for i, e := range entries {
		if i > 0 && e.first > prevLast+1 {
			b.WriteByte('\n')
		}
		prevLast = e.last
		if e.comment != nil {
			b.WriteString(e.comment.Text)
			b.WriteByte('\n')
			continue
		}
		b.WriteString(e.head)
		b.WriteString(e.tail)
		if e.trailing != nil {
			b.WriteByte(' ')
			b.WriteString(e.trailing.Text)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// kind is the alignment class of an entry: declarations of one kind align
// their '=' with their neighbours.
func kind(e *entry) string {
	switch d := e.stmt.(type) {
	case *VarDecl:
		return d.Kind
	case *SemDecl:
		return "sem"
	case *StageDecl:
		return "stage"
	}
	return ""
}

// align pads the heads of runs of consecutive declarations of one kind.
func (fm *formatter) align(entries []*entry) {
	for i := 0; i < len(entries); {
		k := ""
		if entries[i].stmt != nil {
			k = kind(entries[i])
		}
		j := i + 1
		if k != "" {
			for j < len(entries) && alignsWith(entries[j-1], entries[j], k) {
				j++
			}
		}
		width := 0
		for _, e := range entries[i:j] {
			width = max(width, len(e.head))
		}
		for _, e := range entries[i:j] {
			if k != "" {
				e.head += strings.Repeat(" ", width-len(e.head))
			}
		}
		i = j
	}
}

// alignsWith reports whether next continues prev's alignment run: it is a
// declaration of the same kind on the very next line, prev is printed on
// one line, and their heads are short (up to 40 bytes) or of similar length
// (within a factor 2.5): gofmt's rule for aligning key-value lists, so that
// one long stage header does not push every '=' far to the right.
func alignsWith(prev, next *entry, k string) bool {
	if next.stmt == nil || kind(next) != k || strings.Contains(prev.tail, "\n") || next.first != prev.last+1 {
		return false
	}
	a, b := len(prev.head), len(next.head)
	if a > b {
		a, b = b, a
	}
	return b <= 40 || 2*b <= 5*a
}

// stmt prints a statement as the part before '=' and the rest.
func (fm *formatter) stmt(s Stmt) (head, tail string) {
	switch d := s.(type) {
	case *VarDecl:
		if d.Text == "" {
			return d.Kind + " " + d.Name.Name, " ="
		}
		return d.Kind + " " + d.Name.Name, " = " + d.Text
	case *SemDecl:
		return "sem " + d.Name.Name, " = " + d.Count
	case *StageDecl:
		return fm.stageHead(d), " = " + fm.command(d)
	case *EdgeStmt:
		return edgeText(d), ""
	}
	return "", ""
}

func (fm *formatter) stageHead(d *StageDecl) string {
	var b strings.Builder
	b.WriteString("stage ")
	b.WriteString(d.Name.Name)
	if d.Replicas != "" {
		fmt.Fprintf(&b, "[%s]", d.Replicas)
	}
	if len(d.Ports) > 0 {
		b.WriteString(" (")
		for i, p := range d.Ports {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s %s", p.Dir, p.Name.Name)
		}
		b.WriteString(")")
	}
	for _, c := range d.Clauses {
		b.WriteString(" ")
		b.WriteString(c.Kind)
		switch c.Kind {
		case "uses", "after":
			for i, n := range c.Names {
				if i > 0 {
					b.WriteString(",")
				}
				b.WriteString(" ")
				b.WriteString(n.Name)
			}
		case "dir", "merge", "on":
			b.WriteString(" ")
			b.WriteString(c.Text)
		case "restart", "limit":
			formatArgs(&b, c)
		}
	}
	return b.String()
}

// command prints a stage's command with mvdan.cc/sh's printer. A command
// written on one line stays on one line (unless it holds a here-document).
// The printed text is used only if, in place in the script, it reads back
// as one command that prints to the same text: so the layout never changes
// what the script means, and formatting twice changes nothing. Otherwise
// the command is kept as written.
func (fm *formatter) command(d *StageDecl) string {
	if d.Script == nil {
		return d.Command
	}
	oneLine := !strings.Contains(d.Command, "\n")
	for _, single := range []bool{oneLine, !oneLine} {
		text, ok := printShell(d.Script, single)
		if !ok {
			continue
		}
		// A line follows in the script: the command must end before it
		// (mvdan.cc/sh reads "# comment \<newline>" as going on).
		end, f, err := scanShell(fm.sh, text+"\nx", 0)
		if err != nil || end != len(text) || len(f.Stmts) != len(d.Script.Stmts) {
			continue
		}
		// The same text again, and the same program once comments are
		// left out: mvdan.cc/sh's printer can turn "0#0" into "0 #0",
		// which would make the rest of the line a comment.
		if again, ok := printShell(f, single); ok && again == text && fm.program(text) == fm.program(d.Command) {
			return text
		}
	}
	return d.Command
}

// program prints a command's shell AST without its comments, or "" when
// it does not parse.
func (fm *formatter) program(cmd string) string {
	f, err := fm.plain.Parse(strings.NewReader(cmd+"\n"), "")
	if err != nil {
		return ""
	}
	var b strings.Builder
	if syntax.NewPrinter().Print(&b, f) != nil {
		return ""
	}
	return b.String()
}

// printShell prints a shell AST without the final newline and blanks.
func printShell(f *syntax.File, single bool) (string, bool) {
	var b strings.Builder
	if err := syntax.NewPrinter(syntax.SingleLine(single), syntax.SpaceRedirects(true)).Print(&b, f); err != nil {
		return "", false
	}
	text := strings.TrimRight(b.String(), " \t\n")
	return text, text != ""
}

// edgeText prints an edge statement.
func edgeText(s *EdgeStmt) string {
	var b strings.Builder
	for i, e := range s.Ends {
		if i > 0 {
			b.WriteString(" ")
			b.WriteString(arrowText(s.Arrows[i-1]))
			b.WriteString(" ")
		}
		if e.Braced {
			b.WriteString("{")
		}
		for j, r := range e.List {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString(r.Stage.Name)
			if r.Port != nil {
				b.WriteString(".")
				b.WriteString(r.Port.Name)
			}
		}
		if e.Braced {
			b.WriteString("}")
		}
	}
	return b.String()
}

func arrowText(a *Arrow) string {
	if !a.Typed {
		return "->"
	}
	var b strings.Builder
	b.WriteString("-[")
	b.WriteString(a.Type.Name)
	for _, o := range a.Options {
		b.WriteString(" ")
		if o.Name != "" {
			b.WriteString(o.Name)
			b.WriteString("=")
		}
		b.WriteString(o.Raw)
	}
	b.WriteString("]->")
	return b.String()
}
