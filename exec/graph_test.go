package exec

import (
	"os"
	"strings"
	"time"

	"mvdan.cc/sh/v3/syntax"

	"github.com/ipcflow/ipcflow/parser"
)

// graphBuilder makes checked graphs by hand, for tests that do not go
// through the parser.
type graphBuilder struct{ g *parser.Graph }

func newGraph() *graphBuilder { return &graphBuilder{g: &parser.Graph{File: "test.ipcflow"}} }

// stage adds a stage; ports are "in NAME" or "out NAME".
func (b *graphBuilder) stage(name, command string, ports ...string) *parser.Stage {
	f, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(command), name)
	if err != nil {
		panic(err)
	}
	st := &parser.Stage{Name: name, Replicas: 1, Command: command, Script: f}
	for _, p := range ports {
		dir, pname, _ := strings.Cut(p, " ")
		d := parser.In
		if dir == "out" {
			d = parser.Out
		}
		st.Ports = append(st.Ports, &parser.Port{Name: pname, Dir: d})
	}
	b.g.Stages = append(b.g.Stages, st)
	return st
}

func (b *graphBuilder) find(name string) *parser.Stage {
	for _, s := range b.g.Stages {
		if s.Name == name {
			return s
		}
	}
	panic("no stage " + name)
}

// end parses "a", "a.port", "stdin", "stdout", "stderr"; left says which
// side of the arrow a bare stage is on.
func (b *graphBuilder) end(s string, left bool) parser.Endpoint {
	switch s {
	case "stdin", "stdout", "stderr":
		return parser.Endpoint{Port: s}
	}
	name, port, ok := strings.Cut(s, ".")
	if !ok {
		port = "in"
		if left {
			port = "out"
		}
	}
	return parser.Endpoint{Stage: b.find(name), Port: port}
}

// edge adds from -> to of type typ ("" = pipe).
func (b *graphBuilder) edge(from, to string, typ parser.EdgeType, opts ...parser.Options) {
	if typ == "" {
		typ = parser.Pipe
	}
	e := &parser.Edge{From: b.end(from, true), To: b.end(to, false), Type: typ}
	if len(opts) > 0 {
		e.Options = opts[0]
	}
	b.g.Edges = append(b.g.Edges, e)
}

func (b *graphBuilder) chain(typ parser.EdgeType, names ...string) {
	for i := 0; i+1 < len(names); i++ {
		b.edge(names[i], names[i+1], typ)
	}
}

// word parses s as one shell word, as the parser keeps param values.
func word(s string) *syntax.Word {
	f, err := syntax.NewParser().Parse(strings.NewReader(s), "")
	if err != nil {
		panic(err)
	}
	return f.Stmts[0].Cmd.(*syntax.CallExpr).Args[0]
}

// testFlows are graphs a test runs in a child process (role "testflow"),
// since a run uses the process's real fds 0, 1, 2.
var testFlows = map[string]func() *parser.Graph{}

// testFlowRole is the "testflow" role: args[0] names a testFlows entry,
// the rest are run's flags and NAME=VALUE words.
func testFlowRole(args []string) int {
	mk, ok := testFlows[args[0]]
	if !ok {
		os.Stderr.WriteString("no test flow " + args[0] + "\n")
		return 70
	}
	var o Options
	for _, a := range args[1:] {
		switch {
		case a == "--keep-going":
			o.KeepGoing = true
		case a == "--label":
			o.Label = true
		case a == "--dry-run":
			o.DryRun = true
		case strings.HasPrefix(a, "--grace="):
			o.Grace, _ = time.ParseDuration(strings.TrimPrefix(a, "--grace="))
		case strings.HasPrefix(a, "--timeout="):
			o.Timeout, _ = time.ParseDuration(strings.TrimPrefix(a, "--timeout="))
		default:
			o.Overrides = append(o.Overrides, a)
		}
	}
	return Run(mk(), o)
}

func init() {
	testFlows["stdin-grep"] = func() *parser.Graph {
		b := newGraph()
		b.stage("g", "grep -c x")
		b.edge("stdin", "g", "")
		return b.g
	}
}

func init() {
	testFlows["stdin-stdout"] = func() *parser.Graph {
		b := newGraph()
		b.stage("a", "echo from a")
		b.edge("stdin", "stdout", "")
		b.edge("a", "stderr", "")
		return b.g
	}
}
