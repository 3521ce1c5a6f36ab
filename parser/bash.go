package parser

import (
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// What ipcflow's stage shell (mvdan.cc/sh's interpreter, exec/shell.go)
// cannot do that bash can. A stage whose command uses one of these runs
// under the system's bash instead. The list is static and read off the
// command's syntax, so that check says the same on every machine; what
// only a run can know (a builtin named by a variable) is left to the
// stage shell's own error.

// BashNeed is the first construct of a command that needs bash.
type BashNeed struct {
	What string     // "the umask builtin", "redirection of fd 3"
	Pos  syntax.Pos // in the command's text
}

// builtinsOnlyBashHas are bash builtins the interpreter names but does not
// implement ("unsupported builtin"); trap and ulimit the stage shell does
// itself, kill runs as a program.
var builtinsOnlyBashHas = map[string]bool{
	"umask": true, "jobs": true, "fg": true, "bg": true, "disown": true,
	"suspend": true, "caller": true, "enable": true, "compgen": true,
	"complete": true, "compopt": true, "bind": true, "fc": true,
	"history": true, "logout": true,
}

// NeedsBash returns the first construct of f that the stage shell cannot
// run, or nil.
func NeedsBash(f *syntax.File) *BashNeed {
	if f == nil {
		return nil
	}
	var need *BashNeed
	syntax.Walk(f, func(n syntax.Node) bool {
		if need != nil {
			return false
		}
		switch x := n.(type) {
		case *syntax.Redirect:
			need = redirectNeed(x)
		case *syntax.CallExpr:
			need = callNeed(x)
		case *syntax.ParamExp:
			need = paramNeed(x)
		case *syntax.CoprocClause:
			need = &BashNeed{What: "coproc", Pos: x.Pos()}
		case *syntax.DeclClause:
			need = declNeed(x)
		case *syntax.LetClause:
			need = letNeed(x)
		}
		return need == nil
	})
	return need
}

// redirectNeed: the interpreter redirects only fds 0, 1 and 2.
func redirectNeed(rd *syntax.Redirect) *BashNeed {
	if rd.N != nil && rd.N.Value != "0" && rd.N.Value != "1" && rd.N.Value != "2" {
		return &BashNeed{What: "redirection of fd " + rd.N.Value, Pos: rd.N.Pos()}
	}
	if (rd.Op == syntax.DplOut || rd.Op == syntax.DplIn) && rd.Word != nil {
		if v := rd.Word.Lit(); v != "" && strings.Trim(v, "0123456789") == "" && v != "0" && v != "1" && v != "2" {
			return &BashNeed{What: rd.Op.String() + v + " (fd " + v + ")", Pos: rd.OpPos}
		}
	}
	return nil
}

// callNeed: a builtin the interpreter lacks, or an option of one it has
// that it lacks.
func callNeed(call *syntax.CallExpr) *BashNeed {
	if len(call.Args) == 0 {
		return nil
	}
	name := call.Args[0].Lit()
	args := make([]string, 0, len(call.Args)-1)
	for _, w := range call.Args[1:] {
		args = append(args, w.Lit()) // "" for a word that needs expanding
	}
	at := func(what string) *BashNeed { return &BashNeed{What: what, Pos: call.Args[0].Pos()} }
	if builtinsOnlyBashHas[name] {
		return at("the " + name + " builtin")
	}
	switch name {
	case "trap":
		for _, a := range args {
			if u := strings.ToUpper(a); u == "DEBUG" || u == "RETURN" {
				return at("trap on " + u)
			}
		}
	case "printf":
		if len(args) > 0 && args[0] == "-v" {
			return at("printf -v")
		}
		fi := 1
		if len(args) > 1 && args[0] == "--" {
			fi = 2
		}
		if f, _ := LiteralWord(call.Args[min(fi, len(call.Args)-1)]); len(args) > 0 && strings.Contains(f, "%q") {
			return at("printf %q") // the interpreter quotes as '…', bash as a\ b
		}

	case "wait":
		for _, a := range args {
			if a == "-n" || a == "-p" || a == "-f" {
				return at("wait " + a)
			}
		}
	case "read":
		// The interpreter's read has -r, -s, -a and -p PROMPT only.
		for i := 0; i < len(args); i++ {
			a := args[i]
			if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
				break
			}
			if rest := strings.Trim(a[1:], "rsap"); rest != "" {
				return at("read -" + rest[:1])
			}
			if strings.HasSuffix(a, "p") {
				i++ // the prompt
			}
		}
	}
	return nil
}

// declNeed: attributes the interpreter lacks (integer, case folding,
// trace), which it refuses with a message and goes on without.
func declNeed(d *syntax.DeclClause) *BashNeed {
	for _, a := range d.Args {
		if !a.Naked || a.Value == nil {
			continue
		}
		if f := a.Value.Lit(); strings.HasPrefix(f, "-") && strings.ContainsAny(f, "iult") {
			return &BashNeed{What: d.Variant.Value + " " + f, Pos: a.Pos()}
		}
	}
	return nil
}

// letNeed: a quoted let expression (`let "y = 3 * 4"`), which bash
// evaluates as arithmetic and the interpreter takes for a word.
func letNeed(l *syntax.LetClause) *BashNeed {
	for _, e := range l.Exprs {
		if w, ok := e.(*syntax.Word); ok && w.Lit() == "" {
			return &BashNeed{What: "a quoted let expression", Pos: w.Pos()}
		}
	}
	return nil
}

// paramNeed: ${x@Q} and the other @ operators, and PIPESTATUS, which the
// interpreter does not keep: it would expand them silently otherwise
// (abc for 'abc', nothing for "1 0").
func paramNeed(pe *syntax.ParamExp) *BashNeed {
	if pe.Param != nil && pe.Param.Value == "PIPESTATUS" {
		return &BashNeed{What: "PIPESTATUS", Pos: pe.Pos()}
	}
	if pe.Exp != nil && pe.Exp.Op == syntax.OtherParamOps {
		return &BashNeed{What: "${…@" + pe.Exp.Word.Lit() + "}", Pos: pe.Pos()}
	}
	return nil
}

// ShellPos is where position p of the stage's command is in the file.
func (s *Stage) ShellPos(p syntax.Pos) Pos {
	if !s.CommandPos.IsValid() || !p.IsValid() {
		return s.CommandPos
	}
	off := min(int(p.Offset()), len(s.Command))
	before := s.Command[:off]
	nl := strings.LastIndexByte(before, '\n')
	if nl < 0 {
		return Pos{Line: s.CommandPos.Line, Col: s.CommandPos.Col + off}
	}
	return Pos{Line: s.CommandPos.Line + strings.Count(before, "\n"), Col: off - nl}
}
