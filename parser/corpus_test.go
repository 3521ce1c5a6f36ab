package parser

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"mvdan.cc/sh/v3/syntax"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/bad and testdata/good")

// goodScripts are the corpus's good scripts and the project's examples.
func goodScripts(t *testing.T) []string {
	t.Helper()
	files, _ := filepath.Glob("testdata/good/*.ipcflow")
	examples, _ := filepath.Glob("../examples/*.ipcflow")
	if len(files) == 0 {
		t.Fatal("no good scripts in testdata/good")
	}
	return append(files, examples...)
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	src, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// golden compares got with the file name, or rewrites it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(name, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(name)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got):\n%s", name, diff)
	}
}

func TestGoodScripts(t *testing.T) {
	for _, name := range goodScripts(t) {
		t.Run(filepath.Base(name), func(t *testing.T) {
			if _, err := Parse(name, readFile(t, name)); err != nil {
				t.Fatalf("want no error, got:\n%v", err)
			}
		})
	}
}

func TestBadScripts(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.ipcflow")
	if len(files) == 0 {
		t.Fatal("no bad scripts in testdata/bad")
	}
	for _, name := range files {
		t.Run(filepath.Base(name), func(t *testing.T) {
			src := readFile(t, name)
			_, err := Parse(name, src)
			if err == nil {
				t.Fatal("want errors, got none")
			}
			list, ok := err.(ErrorList)
			if !ok {
				t.Fatalf("want an ErrorList, got %T: %v", err, err)
			}
			checkErrorPositions(t, src, list)
			golden(t, strings.TrimSuffix(name, ".ipcflow")+".golden", err.Error()+"\n")
		})
	}
}

// checkErrorPositions asserts that errors are sorted and point into src.
func checkErrorPositions(t *testing.T, src []byte, list ErrorList) {
	t.Helper()
	lines := strings.Split(string(src), "\n")
	for i, e := range list {
		if e.Pos.Line < 1 || e.Pos.Line > len(lines) || e.Pos.Col < 1 || e.Pos.Col > len(lines[e.Pos.Line-1])+1 {
			t.Errorf("error outside the file (%d lines): %v", len(lines), e)
		}
		if i > 0 {
			p := list[i-1].Pos
			if p.Line > e.Pos.Line || (p.Line == e.Pos.Line && p.Col > e.Pos.Col) {
				t.Errorf("errors not sorted: %v before %v", list[i-1], e)
			}
		}
	}
}

// TestFormatCorpus formats every good script: the result must match its
// golden file (for the corpus), parse, mean the same graph, and format to
// itself.
func TestFormatCorpus(t *testing.T) {
	for _, name := range goodScripts(t) {
		t.Run(filepath.Base(name), func(t *testing.T) {
			src := readFile(t, name)
			f, err := ParseAST(name, src)
			if err != nil {
				t.Fatal(err)
			}
			out := Format(f)
			if strings.HasPrefix(name, "testdata/") {
				golden(t, strings.TrimSuffix(name, ".ipcflow")+".fmt", string(out))
			}
			g1, err := Parse(name, src)
			if err != nil {
				t.Fatal(err)
			}
			g2, err := Parse(name, out)
			if err != nil {
				t.Fatalf("formatted script does not check: %v\n%s", err, out)
			}
			if diff := cmp.Diff(summarize(g1), summarize(g2)); diff != "" {
				t.Errorf("formatting changed the graph (-before +after):\n%s\nformatted:\n%s", diff, out)
			}
			f2, err := ParseAST(name, out)
			if err != nil {
				t.Fatal(err)
			}
			if again := Format(f2); string(again) != string(out) {
				t.Errorf("fmt is not idempotent:\n%s", cmp.Diff(string(out), string(again)))
			}
		})
	}
}

// graphSummary is a Graph without positions, with commands printed by the
// shell printer, so that two graphs that mean the same compare equal.
type graphSummary struct {
	Params, Envs, Sems []string
	Stages             []string
	Edges              []string
}

// canonicalCommand prints a command the way mvdan.cc/sh does once its
// printing has settled: print, parse, print. One print is not always a
// fixed point (`\f` in backquotes prints as "$(\n)", which prints as
// "$()"), and two spellings of the same command must compare equal.
// Blanks at the end are layout: mvdan.cc/sh prints "0\v" (a vertical tab
// is a blank to it) as "0 ".
func canonicalCommand(f *syntax.File) string {
	print := func(f *syntax.File) string {
		var b strings.Builder
		syntax.NewPrinter(syntax.SingleLine(true)).Print(&b, f)
		return strings.TrimRight(b.String(), " \t\n")
	}
	once := print(f)
	again, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(once), "")
	if err != nil {
		return once
	}
	return print(again)
}

func summarize(g *Graph) graphSummary {
	var s graphSummary
	for _, p := range g.Params {
		s.Params = append(s.Params, p.Name+"="+p.Text)
	}
	for _, e := range g.Envs {
		s.Envs = append(s.Envs, e.Name+"="+e.Text)
	}
	for _, m := range g.Sems {
		s.Sems = append(s.Sems, fmt.Sprintf("%s=%d", m.Name, m.Count))
	}
	for _, st := range g.Stages {
		var b strings.Builder
		fmt.Fprintf(&b, "%s[%d]", st.Name, st.Replicas)
		for _, p := range st.Ports {
			fmt.Fprintf(&b, " %s:%s", p.Dir, p.Name)
		}
		for _, u := range st.Uses {
			fmt.Fprintf(&b, " uses:%s", u.Name)
		}
		for _, a := range st.After {
			fmt.Fprintf(&b, " after:%s", a.Name)
		}
		fmt.Fprintf(&b, " dir:%s native:%v cmd:", st.DirText, st.Native)
		b.WriteString(canonicalCommand(st.Script))
		s.Stages = append(s.Stages, b.String())
	}
	for _, e := range g.Edges {
		s.Edges = append(s.Edges, fmt.Sprintf("%s -> %s [%s] %+v %s", e.From, e.To, e.Type, e.Options, e.Label()))
	}
	return s
}

// TestASTPositions checks that every position in the AST of every good
// script points at the text it stands for.
func TestASTPositions(t *testing.T) {
	for _, name := range goodScripts(t) {
		t.Run(filepath.Base(name), func(t *testing.T) {
			src := readFile(t, name)
			f, err := ParseAST(name, src)
			if err != nil {
				t.Fatal(err)
			}
			l := newLexer(string(src))
			at := func(p Pos, want string) {
				t.Helper()
				off := -1
				if p.Line >= 1 && p.Line <= len(l.lines) {
					off = l.lines[p.Line-1] + p.Col - 1
				}
				if off < 0 || !strings.HasPrefix(string(src[off:]), want) {
					t.Errorf("position %v does not point at %q", p, want)
				}
			}
			for _, c := range f.Comments {
				at(c.Pos, c.Text)
			}
			for _, s := range f.Stmts {
				switch d := s.(type) {
				case *VarDecl:
					at(d.Keyword, d.Kind)
					at(d.Name.Pos, d.Name.Name)
					if d.Text != "" {
						at(d.ValuePos, d.Text)
					}
				case *SemDecl:
					at(d.Keyword, "sem")
					at(d.Name.Pos, d.Name.Name)
					at(d.CountPos, d.Count)
				case *StageDecl:
					at(d.Keyword, "stage")
					at(d.Name.Pos, d.Name.Name)
					if d.Replicas != "" {
						at(d.ReplicasPos, d.Replicas)
					}
					for _, p := range d.Ports {
						at(p.Pos, p.Dir.String())
						at(p.Name.Pos, p.Name.Name)
					}
					for _, c := range d.Clauses {
						at(c.Pos, c.Kind)
						for _, n := range c.Names {
							at(n.Pos, n.Name)
						}
						if c.Kind == "dir" {
							at(c.WordPos, c.Text)
						}
					}
					at(d.CommandPos, d.Command)
				case *EdgeStmt:
					for _, e := range d.Ends {
						if e.Braced {
							at(e.Pos, "{")
						}
						for _, r := range e.List {
							at(r.Stage.Pos, r.Stage.Name)
							if r.Port != nil {
								at(r.Port.Pos, r.Port.Name)
							}
						}
					}
					for _, a := range d.Arrows {
						if a.Typed {
							at(a.Pos, "-[")
							at(a.Type.Pos, a.Type.Name)
						} else {
							at(a.Pos, "->")
						}
						for _, o := range a.Options {
							at(o.Pos, o.Name)
							at(o.ValuePos, o.Raw)
						}
					}
				}
			}
		})
	}
}
