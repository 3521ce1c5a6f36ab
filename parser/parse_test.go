package parser

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"mvdan.cc/sh/v3/syntax"
)

// TestErrors lists small scripts with the exact error text each must give.
func TestErrors(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"missing eq", "stage a cat", "f:1:9: expected a clause (uses, after, dir, on, native, unordered, merge, restart, limit) or '=', found 'cat'"},
		{"arrow for eq", "stage a -> b", "f:1:9: expected '=' and a command after the stage, found '->'"},
		{"misspelt keyword", "stag b = echo", "f:1:1: expected a statement, found 'stag b' (did you mean \"stage\"?)"},
		{"misspelt param", "parm X = 1", "f:1:1: expected a statement, found 'parm X' (did you mean \"param\"?)"},
		{"no command", "stage a =", "f:1:10: expected a command after '=', found end of file"},
		{"bad char", "a -> b;", "f:1:7: unexpected character ';'"},
		{"lone dash", "a - b", "f:1:3: expected '->' or '-[' after '-'"},
		{"unknown stage", "stage alpha = cat\nalpah -> stdout", "f:2:1: unknown stage alpah (did you mean \"alpha\"?)"},
		{"no suggestion", "stage alpha = cat\nzzz -> stdout", "f:2:1: unknown stage zzz"},
		{"shell error line 2", "stage a = echo 'x\ny' )", "f:2:4: shell syntax error: a command can only contain words and redirects; encountered `)`"},
		{"shell eof", "stage a = echo \"x\n\n", "f:1:16: shell syntax error: reached EOF without closing quote `\"`"},
		{"param two words", "param X = a b", "f:1:13: expected end of line after the value (quote a value that holds blanks), found 'b'"},
		{"param bad word", "param X = $(", "f:1:11: unterminated '$(' in word"},
		{"dir missing", "stage a dir = cat", "f:1:13: expected a directory after 'dir', found '='"},
		{"sem stage", "sem s = 1\nstage a = cat\ns -> a", "f:3:1: s is a semaphore (declared at 1:5), not a stage"},
		{"self edge", "stage a = cat\na -> a", "f:2:3: cycle: a -> a (a stage cannot wait for its own output or its own end)"},
		{"after cycle", "stage a after b = cat\nstage b after a = cat", "f:2:15: cycle: a -> b -> a (a stage cannot wait for its own output or its own end)"},
		{"mixed cycle", "stage a = cat\nstage b = cat\nstage c after b = cat\na -> b\nc -> a", "f:4:3: cycle: a -> b -> c -> a (a stage cannot wait for its own output or its own end)"},
		{"deadlock", "sem m = 1\nstage a uses m = cat\nstage b uses m = cat\na -> b", "f:3:14: certain deadlock: stages a and b both use semaphore m (count 1) and are joined by the data path a -> b"},
		{"no deadlock count 2", "sem m = 2\nstage a uses m = cat\nstage b uses m = cat\na -> b", ""},
		{"no deadlock when apart", "sem m = 1\nstage a uses m = cat\nstage b uses m = cat\nstage c = cat\na -> c\nb -> c", ""},
		{"wrong dir", "stage a (in d) = cat\nstage b = cat\na.d -> b", "f:3:3: a.d is an input port; it cannot be on the left of an arrow"},
		{"out port right", "stage a (out o) = cat\nstage b = cat\nb -> a.o", "f:3:8: a.o is an output port; it cannot be on the right of an arrow"},
		{"size unit", "stage a = cat\na -[pipe size=1KB]-> stdout", "f:2:15: bad size \"1KB\": expected bytes or a number with K, KiB, M, MiB, G or GiB"},
		{"pipe too big", "stage a = cat\na -[pipe size=4G]-> stdout", "f:2:15: pipe buffer size 4G is too large (at most 2147483647 bytes)"},
		// ipcflow lock of a unit the stage holds already waits for ever.
		{"lock held by uses", "sem db = 1\nstage a uses db = ipcflow lock db -- echo inner", "f:2:19: certain deadlock: stage a takes semaphore db (count 1) with ipcflow lock while it holds its one unit already"},
		{"lock in lock", "sem db = 1\nstage a = ipcflow lock db -- ipcflow lock db -- echo nested", "f:2:30: certain deadlock: stage a takes semaphore db (count 1) with ipcflow lock while it holds its one unit already"},
		{"lock timeout 0", "sem db = 1\nstage a uses db = ipcflow lock --timeout=0 db -- true", "f:2:19: certain deadlock: stage a takes semaphore db (count 1) with ipcflow lock while it holds its one unit already"},
		// What run would refuse, on every machine, check refuses too.
		{"shm below a page", "stage a = cat\na -[shm size=1K]-> stdout", "f:2:14: shm size 1024 is below one page (4096)"},
		{"mq message of 1 byte", "stage a = cat\na -[mq msgsize=1]-> stdout", "f:2:16: mq msgsize 1: must be at least 2 (each message has one byte of framing)"},
		{"positional on pipe", "stage a = cat\na -[pipe tcp]-> stdout", "f:2:10: expected an option NAME=VALUE for pipe, found 'tcp'"},
		{"socket twice", "stage a = cat\na -[socket tcp udp]-> stdout", "f:2:16: socket kind given twice (tcp, then udp)"},
		{"bad port in addr", "stage a = cat\na -[socket tcp addr=h:99999]-> stdout", "f:2:21: bad port \"99999\" in addr: expected 0 to 65535"},
		// Errors that teach: the arrow of other languages, a socket's kind
		// written as the type, and clauses of SPEC parts not built yet; one
		// line each (TestErrors wants exactly one), and no "unknown stage"
		// for a stage whose declaration was refused.
		{"fat arrow", "stage a = echo\nstage b = cat\na => b", "f:3:3: expected '->' or '-[' between stages, found '=>' (did you mean \"->\"?)"},
		{"fat arrow no space", "stage a = echo\nstage b = cat\na=>b", "f:3:2: expected '->' or '-[' between stages, found '=>' (did you mean \"->\"?)"},
		{"fat arrow second", "stage a = echo\nstage b = cat\na -> b => stdout", "f:3:8: expected '->' or '-[' between stages, found '=>' (did you mean \"->\"?)"},
		{"tcp as type", "stage a = echo\nstage b = cat\na -[tcp]-> b", "f:3:5: unknown edge type \"tcp\" (did you mean \"-[socket tcp]->\"?); expected one of fifo, mmap, mq, pipe, shm, socket"},
		{"unix as type", "stage a = echo\nstage b = cat\na -[unix]-> b", "f:3:5: unknown edge type \"unix\" (did you mean \"-[socket unix]->\"?); expected one of fifo, mmap, mq, pipe, shm, socket"},
		{"udp as type", "stage a = echo\nstage b = cat\na -[udp addr=127.0.0.1:9]-> b", "f:3:5: unknown edge type \"udp\" (did you mean \"-[socket udp]->\"?); expected one of fifo, mmap, mq, pipe, shm, socket"},
		{"restart option misspelt", "stage a restart always bakoff 1s = cat", `f:1:24: stage a: unknown restart option "bakoff" (did you mean "backoff"?): expected max, within or backoff`},
		{"restart duration overflow", "stage a restart always within 99999999999h = cat", `f:1:31: stage a: bad duration "99999999999h": too long (at most about 2562047h)`},
		{"limit pids zero", "stage a limit pids=0 = cat", "f:1:20: stage a: limit pids: value must be 1 to 4194304, found 0"},
		{"limit memory tiny", "stage a limit memory=1 = cat", `f:1:22: stage a: limit memory: "1" is too little to start a program in: at least 1MiB`},
		{"restart native", "stage a native restart always = cat", "f:1:16: stage a: restart: a native stage talks to its ports' objects itself, so ipcflow cannot hold them for the next copy"},
		{"limit on a host", "stage a on h limit pids=9 = cat", "f:1:14: stage a: limits are set on this machine; a stage on another host (on h) cannot have them yet"},
		{"restart on a host", "stage a on h restart on-failure = cat", "f:1:14: stage a: a stage on another host (on h) cannot restart yet: its ssh sessions read its input ahead of it, and a copy's end would lose what they hold"},
		{"on without a host", "stage a = echo\nstage b on = cat\na -> b", "f:2:12: expected a host after 'on', found '='"},
		{"restart", "stage a restart on-failure max 3 within 10s = while true; do\n echo\ndone\na -> stdout", ""},
		{"restart-when", "stage a restart never = cat", "f:1:17: stage a: unknown restart policy \"never\": expected on-failure or always"},
		{"restart-missing", "stage a restart = cat", "f:1:17: stage a: expected on-failure or always after 'restart'"},
		{"restart-zero", "stage a restart always backoff 0s = cat", "f:1:32: stage a: bad duration \"0s\": must be more than 0"},
		{"restart-negative", "stage a restart always within -5s = cat", "f:1:31: stage a: bad duration \"-5s\": must be more than 0"},
		{"restart-max", "stage a restart always max 0 = cat", "f:1:28: stage a: restart max must be 1 to 1000000, found 0"},
		{"restart-twice", "stage a restart always restart always = cat", "f:1:24: restart given twice for stage a (first at 1:9)"},
		{"restart-after", "stage a restart always = seq 3\nstage b after a = cat", "f:2:15: stage b is after a, which restarts always and so never ends of itself (1:9): use restart on-failure, or drop the after"},
		{"limit", "stage a = echo\nstage b (in x) limit memory=64MiB, cpu=0.5 = cat \"$x\"\na -> b.x", ""},
		{"limit-unknown", "stage a limit disk=1G = cat", "f:1:15: stage a: unknown resource \"disk\" in limit: expected memory, cpu, pids or files"},
		{"limit-size", "stage a limit memory=lots = cat", "f:1:22: stage a: limit memory: bad size \"lots\": expected bytes or a number with K, KiB, M, MiB, G or GiB"},
		{"limit-eq", "stage a limit memory 1G = cat", "f:1:22: stage a: expected '=' and a value after limit memory"},
		{"type in capitals", "stage a = cat\na -[PIPE]-> stdout", "f:2:5: unknown edge type \"PIPE\" (did you mean \"pipe\"?); expected one of fifo, mmap, mq, pipe, shm, socket"},
		{"option in capitals", "stage a = cat\na -[pipe SIZE=1K]-> stdout", "f:2:10: unknown option \"SIZE\" for pipe (did you mean \"size\"?); pipe takes size"},
		{"stage in another case", "stage Words = cat\nwords -> stdout", "f:2:1: unknown stage words (did you mean \"Words\"?)"},
		{"unknown port suggestion", "stage a (out log) = cat\na.lgo -> stdout", "f:2:3: stage a has no port lgo (did you mean \"log\"?); its ports are in, out, err, log"},
		{"port on std", "stage a = cat\na -> stdout.x", "f:2:13: stdout has no ports"},
		{"unterminated option quote", "stage a = cat\na -[fifo path='x]-> stdout", "f:2:15: unterminated quote ' in option value"},
		{"ok spaces", "param N=3\nstage a(in x)uses  = cat", "f:2:20: expected a name after 'uses', found '='"},
		{"continued dsl line", "stage a = cat\nstage b = cat\na -> \\\n  b", ""},
		{"crlf line ends", "param N = 1\r\nstage a = sort |\r\n  uniq\r\nstage b = cat # c\r\na -> b\r\n", ""},
		{"crlf positions", "stage a = cat\r\n\r\nb -> a\r\n", "f:3:1: unknown stage b"},
		{"columns count bytes", "stage a = echo \tél )", "f:1:21: shell syntax error: a command can only contain words and redirects; encountered `)`"},
		{"quoted heredoc", "stage a = cat <<'EOF'\n$x\nEOF\na -> stdout", ""},
		{"trailing backslash command", "stage a = echo x \\\n  y\na -> stdout", ""},
		// A broken command's following lines are skipped up to a line
		// that starts a statement, not read as statements.
		{"broken for body", "stage a = for x in 1 2; do\n  echo )\n  echo $x\ndone\nstage b = cat\na -> b",
			"f:2:8: shell syntax error: a command can only contain words and redirects; encountered `)`"},
		{"broken if body", "stage a = if true; then\n  echo ok\n  echo )\n  echo $x\nfi\na -> stdout",
			"f:3:8: shell syntax error: a command can only contain words and redirects; encountered `)`"},
		{"broken heredoc", "stage a = cat <<EOF | )\nsome body text\nEOF\nstage b = cat\na -> b",
			"f:1:21: shell syntax error: `|` must be followed by a statement"},
		{"broken then statements", "stage a = echo ) |\n  sort\n  # c\n\n  stage b = cat\n{a, b} -> stdout\nparam P = 1\nenv E=x\nsem s = 1\nb.out -[fifo]-> stderr",
			"f:1:16: shell syntax error: a command can only contain words and redirects; encountered `)`"},
		{"broken then bad stage", "stage a = echo )\n  env X=1 cmd\nstage b cat",
			"f:1:16: shell syntax error: a command can only contain words and redirects; encountered `)`\n" +
				"f:3:9: expected a clause (uses, after, dir, on, native, unordered, merge, restart, limit) or '=', found 'cat'"},
		{"broken then bad param", "stage a = echo )\n  sem cmd x\nparam B = two words\nsem s = x",
			"f:1:16: shell syntax error: a command can only contain words and redirects; encountered `)`\n" +
				"f:3:15: expected end of line after the value (quote a value that holds blanks), found 'words'\n" +
				"f:4:9: expected a count after '=', found 'x'"},
		{"error early in a long line", "stage a = ! ! true " + strings.Repeat("x ", 5000),
			"f:1:11: shell syntax error: cannot negate a command multiple times"},
		{"deep over lines", "stage a = " + strings.Repeat("(\n", 20000) + "true\n" + strings.Repeat(")\n", 20000) + "stage b = cat\nb -> stdout",
			"f:10001:1: shell nesting deeper than 10000 levels"},
		// mvdan.cc/sh's columns stop at 16383 and its lines at 262143.
		{"column past 16383", "stage a = " + strings.Repeat("echo x; ", 2050) + "echo )",
			"f:1:16416: shell syntax error: a command can only contain words and redirects; encountered `)`"},
		// Nesting that would overflow mvdan.cc/sh's stack (a fatal error).
		{"deep subshells", "stage a = " + strings.Repeat("(", 200000) + "true" + strings.Repeat(")", 200000),
			"f:1:10012: shell nesting deeper than 10000 levels"},
		{"deep unclosed", "stage a = " + strings.Repeat("(", 300000),
			"f:1:10012: shell nesting deeper than 10000 levels"},
		{"deep arithmetic", "stage a = echo " + strings.Repeat("$((", 100000) + "1" + strings.Repeat("))", 100000),
			"f:1:30016: shell nesting deeper than 10000 levels"},
		{"deep param word", "param P = " + strings.Repeat("$(", 20000) + "x" + strings.Repeat(")", 20000),
			"f:1:20011: shell nesting deeper than 10000 levels"},
		{"nesting within bounds", "stage a = " + strings.Repeat("(", 9000) + "true" + strings.Repeat(")", 9000), ""},
		// mvdan.cc/sh drops NUL bytes: the command would run with other
		// arguments than those written.
		{"NUL in a command", "stage a = echo x\x00y\na -> stdout", "f:1:17: " + errNUL},
		{"NUL in a param", "param P = a\x00b\nstage a = cat\na -> stdout", "f:1:12: " + errNUL},
		{"NUL in an option", "stage a = cat\na -[fifo path=/tmp/a\x00b]-> stdout", "f:2:21: " + errNUL},
		{"NUL between tokens", "stage a = cat\na ->\x00 stdout", "f:2:5: " + errNUL},
		{"NULs in a comment", "# a\x00\x00\nstage a = cat\na -> stdout", "f:1:4: " + errNUL + "\nf:1:5: " + errNUL},
		// SPEC 5: a declared port that no edge names is a forgotten edge.
		{"unconnected in port", "stage m (in dict) = comm -23 - \"$dict\"\nstdin -> m",
			"f:1:10: port m.dict is declared but no edge goes into it (the command would read nothing from $dict)"},
		{"unconnected out port", "stage a (out log) = echo x > \"$log\"",
			"f:1:10: port a.log is declared but no edge comes out of it (what the command writes to $log would be lost)"},
		{"implicit ports need no edge", "stage a = cat", ""},
		{"port named by a bad edge", "stage a (in d) = cat\nstage b = cat\na.d -> b", "f:3:3: a.d is an input port; it cannot be on the left of an arrow"},
		{"port on a broken line", "stage a (in d) = cat\nstdin -> a.d -> ;", "f:2:17: unexpected character ';'"},
		{"empty script", "", "f:1:1: the script declares no stage; a flow needs at least one (stage NAME = COMMAND)"},
		{"params alone", "# c\nparam N = 1\nsem s = 1\n", "f:1:1: the script declares no stage; a flow needs at least one (stage NAME = COMMAND)"},
		{"a stage with a bad name", "stage stdout = cat", "f:1:7: stdout is a reserved name; it cannot name a stage"},
		{"no stage after a syntax error", "stage = cat", "f:1:7: expected a stage name, found '='"},
		// "did you mean" for every name an edge's end may hold.
		{"port outt", "stage a = cat\nstage b = cat\na.outt -> b", "f:3:3: stage a has no port outt (did you mean \"out\"?); its ports are in, out, err"},
		{"port inn", "stage a = cat\nstage b = cat\na -> b.inn", "f:3:8: stage b has no port inn (did you mean \"in\"?); its ports are in, out, err"},
		{"stream on the right", "stage a = cat\na -> stdot", "f:2:6: unknown stage stdot (did you mean \"stdout\"?)"},
		{"stream on the left", "stage a = cat\nstdn -> a", "f:2:1: unknown stage stdn (did you mean \"stdin\"?)"},
		{"stream on the wrong side", "stage a = cat\nstdot -> a", "f:2:1: unknown stage stdot (did you mean \"stdout\"?)"},
		{"stream in capitals", "stage a = cat\na -> STDERR", "f:2:6: unknown stage STDERR (did you mean \"stderr\"?)"},
		{"no stream after after", "stage a = cat\nstage b after stdot = cat\na -> b", "f:2:15: unknown stage stdot"},
		{"port of the side", "stage a (in date, out data) = cat\nstage b = cat\nb -> a.dat\na.data -> stdout",
			"f:3:8: stage a has no port dat (did you mean \"date\"?); its ports are in, out, err, date, data"},
		{"no port of the other side", "stage a = cat\na.ni -> stdout", "f:2:3: stage a has no port ni; its ports are in, out, err"},
		// Option values are shell words (SPEC 4): what cannot be
		// expanded is a check error; what holds a param is checked by run.
		{"option command substitution", "stage a = cat\na -[fifo path=$(pwd)/x]-> stdout",
			"f:2:15: command substitution is not allowed in an option value; ipcflow expands it itself, before any stage starts, with no shell"},
		{"option unterminated expansion", "stage a = cat\na -[fifo path=${P]-> stdout", "f:2:15: unterminated '${' in option value"},
		{"option two words", "stage a = cat\na -[fifo path=a\"\"b\\]]-> stdout", ""},
		{"option size from a param", "param SZ = 1X\nstage a = cat\na -[pipe size=$SZ]-> stdout", ""},
		{"option expansion in a group", "stage a = cat\na -[pipe size=${SZ:-1K} maxmsg=$N]-> stdout",
			"f:2:25: unknown option \"maxmsg\" for pipe; pipe takes size"},
		{"option bad literal in quotes", "stage a = cat\na -[pipe size='1X']-> stdout",
			"f:2:15: bad size \"1X\": expected bytes or a number with K, KiB, M, MiB, G or GiB"},
		{"addr expanded on unix", "stage a = cat\na -[socket addr=$A]-> stdout", "f:2:12: addr is for socket tcp or udp, not unix"},
		{"line past 262143", "stage a = echo \"" + strings.Repeat("\n", 300000) + "\" )",
			"f:300001:3: shell syntax error: a command can only contain words and redirects; encountered `)`"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f", []byte(tt.src))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Parse(%.200q):\n got: %.2000s\nwant: %s", tt.src, got, tt.want)
			}
		})
	}
}

// TestAST compares parsed statements with the expected AST, positions and
// shell ASTs left out (TestASTPositions checks positions).
func TestAST(t *testing.T) {
	id := func(s string) Ident { return Ident{Name: s} }
	tests := []struct {
		src  string
		want []Stmt
	}{
		{"param N = 10", []Stmt{&VarDecl{Kind: "param", Name: id("N"), Text: "10"}}},
		{"env E=", []Stmt{&VarDecl{Kind: "env", Name: id("E")}}},
		{`param F = "${X:-a b}" # c`, []Stmt{&VarDecl{Kind: "param", Name: id("F"), Text: `"${X:-a b}"`}}},
		{"sem db = 3", []Stmt{&SemDecl{Name: id("db"), Count: "3"}}},
		{"stage g[4] (in d, out l) uses s, t after a dir /tmp native = grep x",
			[]Stmt{&StageDecl{
				Name: id("g"), Replicas: "4",
				Ports: []*PortDecl{{Dir: In, Name: id("d")}, {Dir: Out, Name: id("l")}},
				Clauses: []*Clause{
					{Kind: "uses", Names: []Ident{id("s"), id("t")}},
					{Kind: "after", Names: []Ident{id("a")}},
					{Kind: "dir", Text: "/tmp"},
					{Kind: "native"},
				},
				Command: "grep x",
			}}},
		{"stage s = a |\n b", []Stmt{&StageDecl{Name: id("s"), Command: "a |\n b"}}},
		{"{a, b.err} -> c -[shm size=1MiB]-> {d.x, stdout}",
			[]Stmt{&EdgeStmt{
				Ends: []*Ends{
					{Braced: true, List: []*EndRef{{Stage: id("a")}, {Stage: id("b"), Port: &Ident{Name: "err"}}}},
					{List: []*EndRef{{Stage: id("c")}}},
					{Braced: true, List: []*EndRef{{Stage: id("d"), Port: &Ident{Name: "x"}}, {Stage: id("stdout")}}},
				},
				Arrows: []*Arrow{
					{},
					{Typed: true, Type: id("shm"), Options: []*Option{{Name: "size", Raw: "1MiB", Value: "1MiB"}}},
				},
			}}},
		{`a -[socket tcp addr="127.0.0.1:80"]-> b`,
			[]Stmt{&EdgeStmt{
				Ends: []*Ends{{List: []*EndRef{{Stage: id("a")}}}, {List: []*EndRef{{Stage: id("b")}}}},
				Arrows: []*Arrow{{Typed: true, Type: id("socket"), Options: []*Option{
					{Raw: "tcp", Value: "tcp"},
					{Name: "addr", Raw: `"127.0.0.1:80"`, Value: "127.0.0.1:80"},
				}}},
			}}},
		{"stage -> param", []Stmt{&EdgeStmt{
			Ends:   []*Ends{{List: []*EndRef{{Stage: id("stage")}}}, {List: []*EndRef{{Stage: id("param")}}}},
			Arrows: []*Arrow{{}},
		}}},
	}
	opts := cmp.Options{
		cmpopts.IgnoreTypes(Pos{}, (*syntax.File)(nil), (*syntax.Word)(nil)),
	}
	for _, tt := range tests {
		f, err := ParseAST("f", []byte(tt.src))
		if err != nil {
			t.Errorf("ParseAST(%q): %v", tt.src, err)
			continue
		}
		if diff := cmp.Diff(tt.want, f.Stmts, opts); diff != "" {
			t.Errorf("ParseAST(%q) (-want +got):\n%s", tt.src, diff)
		}
	}
}

// TestGraph checks the Graph built from a script, field by field.
func TestGraph(t *testing.T) {
	src := `param FILE = "$HOME/x"
sem db = 2
stage a (in dict, out log) uses db dir "$TMP" = sort "$dict"
stage b[3] after a = cat
stage c = echo 'multi
line'
a -> b -[fifo size=64K path=/tmp/p]-> c
a.log -[mq maxmsg=5 msgsize=1KiB]-> {c, stdout}
stdin -> a.dict
{a.err, b.err} -[socket udp addr=:9000]-> stderr
c -[mmap size=1G]-> stdout
`
	g, err := Parse("f", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if p := g.Param("FILE"); p == nil || p.Text != `"$HOME/x"` || p.Value == nil {
		t.Errorf("param FILE = %+v", p)
	}
	if g.Param("NOPE") != nil {
		t.Error("Param(NOPE) is not nil")
	}
	a, b, c := g.Stage("a"), g.Stage("b"), g.Stage("c")
	if a.Replicas != 1 || b.Replicas != 3 {
		t.Errorf("replicas a=%d b=%d, want 1 and 3", a.Replicas, b.Replicas)
	}
	if a.Port("dict") == nil || a.Port("dict").Dir != In || a.Port("log").Dir != Out || a.Port("in") != nil {
		t.Errorf("ports of a: %+v", a.Ports)
	}
	if len(a.Uses) != 1 || a.Uses[0] != g.Sems[0] || g.Sems[0].Count != 2 {
		t.Errorf("a uses %v", a.Uses)
	}
	if len(b.After) != 1 || b.After[0] != a {
		t.Errorf("b after %v", b.After)
	}
	if a.DirText != `"$TMP"` || a.Dir == nil {
		t.Errorf("dir of a: %q", a.DirText)
	}
	if c.Command != "echo 'multi\nline'" || c.CommandPos != (Pos{5, 11}) || c.Script == nil {
		t.Errorf("c: command %q at %v", c.Command, c.CommandPos)
	}
	var got []string
	for _, e := range g.Edges {
		got = append(got, e.From.String()+" -> "+e.To.String()+" "+e.Label()+" @"+e.Pos.String())
	}
	want := []string{
		"a.out -> b.in pipe @7:3",
		"b.out -> c.in fifo size=64KiB path=/tmp/p @7:8",
		"a.log -> c.in mq maxmsg=5 msgsize=1KiB @8:7",
		"a.log -> stdout mq maxmsg=5 msgsize=1KiB @8:7",
		"stdin -> a.dict pipe @9:7",
		"a.err -> stderr socket udp addr=:9000 @10:16",
		"b.err -> stderr socket udp addr=:9000 @10:16",
		"c.out -> stdout mmap size=1GiB @11:3",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("edges (-want +got):\n%s", diff)
	}
	if e := g.Edges[1]; e.Options.Size != 64<<10 || e.Options.Path != "/tmp/p" {
		t.Errorf("fifo options %+v", e.Options)
	}
	if e := g.Edges[5]; e.Options.Socket != "udp" || e.Options.Addr != ":9000" {
		t.Errorf("socket options %+v", e.Options)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{"1", 1, ""}, {"4096", 4096, ""}, {"1K", 1024, ""}, {"1KiB", 1024, ""},
		{"3M", 3 << 20, ""}, {"2MiB", 2 << 20, ""}, {"1G", 1 << 30, ""}, {"5GiB", 5 << 30, ""},
		{"0", 0, "must be more than 0"}, {"-1", 0, "expected bytes"}, {"+1", 0, "expected bytes"},
		{"1k", 0, "expected bytes"}, {"K", 0, "expected bytes"}, {"1.5M", 0, "expected bytes"},
		{"9223372036854775807", 1<<63 - 1, ""}, {"9007199254740993G", 0, "too large"},
		{"99999999999999999999", 0, "too large"}, {"", 0, "expected bytes"},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseSize(%q) = %d, %v; want error with %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestDidYouMean(t *testing.T) {
	cands := []string{"words", "lower", "count", "top"}
	tests := map[string]string{
		"wrods": ` (did you mean "words"?)`, "lowr": ` (did you mean "lower"?)`,
		"tpo": ` (did you mean "top"?)`, "xyz": "", "counting": "", "words": "",
		"WORDS": ` (did you mean "words"?)`, "Wrods": ` (did you mean "words"?)`, "TOP": ` (did you mean "top"?)`,
	}
	for in, want := range tests {
		if got := didYouMean(in, cands); got != want {
			t.Errorf("didYouMean(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckOverrides(t *testing.T) {
	g, err := Parse("f.ipcflow", []byte("param FILE = x\nparam N = 1\nstage a = cat"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := g.CheckOverrides([]string{"N=5", "FILE=a=b"})
	if err != nil || m["N"] != "5" || m["FILE"] != "a=b" {
		t.Errorf("CheckOverrides = %v, %v", m, err)
	}
	_, err = g.CheckOverrides([]string{"NN=5", "1=2", "a=3"})
	want := "NN=5: f.ipcflow declares no param NN (did you mean \"N\"?)\n" +
		"bad argument \"1=2\": expected NAME=VALUE\n" +
		"a=3: f.ipcflow declares no param a"
	if err == nil || err.Error() != want {
		t.Errorf("CheckOverrides error:\n got: %v\nwant: %s", err, want)
	}
}

// TestAllErrorsAtOnce: one run reports problems of every family, sorted.
func TestAllErrorsAtOnce(t *testing.T) {
	src := "stage a = cat\nstage a = cat\nb -> a\na -[pipe size=x]-> stdout\nstage c = echo )\n"
	_, err := Parse("f", []byte(src))
	list, ok := err.(ErrorList)
	if !ok || len(list) != 4 {
		t.Fatalf("want 4 errors, got %v", err)
	}
	checkErrorPositions(t, []byte(src), list)
}

// zeros is an endless reader, like /dev/zero.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestReadScriptLimit: an endless input gives one error, not an out of
// memory death.
func TestReadScriptLimit(t *testing.T) {
	if _, err := ReadScriptFrom("z", zeros{}); err == nil || err.Error() != "z: script larger than 64 MiB" {
		t.Errorf("endless input: %v", err)
	}
	src, err := ReadScriptFrom("s", strings.NewReader("stage a = cat\n"))
	if err != nil || string(src) != "stage a = cat\n" {
		t.Errorf("small input: %q, %v", src, err)
	}
}

// TestParamsOfBrokenScript: the declared params are known even when the
// script has errors, for run to check its NAME=VALUE arguments too.
func TestParamsOfBrokenScript(t *testing.T) {
	f, err := ParseAST("f", []byte("param A = 1\nstage a = echo )\nparam B = two words\nenv C = 3"))
	if err == nil {
		t.Fatal("want errors")
	}
	if got := f.Params(); !slices.Equal(got, []string{"A", "B"}) {
		t.Errorf("Params() = %v, want [A B]", got)
	}
	if _, err := CheckOverrides("f", f.Params(), []string{"A=1", "C=2"}); err == nil || err.Error() != "C=2: f declares no param C" {
		t.Errorf("CheckOverrides: %v", err)
	}
}

// TestOptionWords: an option value is a shell word. One written out is a
// value now, quotes and backslashes removed; one that holds an expansion
// is kept for run to expand (Edge.Unexpanded) and labelled as written.
func TestOptionWords(t *testing.T) {
	src := `param P = /x
stage a = cat
stage b = cat
a -[fifo path='/tmp/a b]' size="64K"]-> b
a.err -[mmap path="$P/rec" size=$SZ]-> stdout
b -[fifo path=/tmp/c\ d\]e"\$f"]-> stdout
`
	g, err := Parse("f", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if o := g.Edges[0].Options; o.Path != "/tmp/a b]" || o.Size != 64<<10 || g.Edges[0].Unexpanded != nil {
		t.Errorf("written-out options: %+v, unexpanded %v", o, g.Edges[0].Unexpanded)
	}
	if o := g.Edges[2].Options; o.Path != "/tmp/c d]e$f" {
		t.Errorf("escaped path: %q", o.Path)
	}
	e := g.Edges[1]
	var got []string
	for _, w := range e.Unexpanded {
		got = append(got, fmt.Sprintf("%s=%s@%s", w.Name, w.Text, w.Pos))
	}
	if want := []string{`path="$P/rec"@5:19`, "size=$SZ@5:33"}; !slices.Equal(got, want) || e.Options.Path != "" || e.Options.Size != 0 {
		t.Errorf("unexpanded options %v (want %v), values %+v", got, want, e.Options)
	}
	if l := e.Label(); l != `mmap path="$P/rec" size=$SZ` {
		t.Errorf("label %q", l)
	}
}

// What may take a second unit, or gives up, is no certain deadlock.
func TestLocksThatMayWait(t *testing.T) {
	for _, src := range []string{
		"sem db = 2\nstage a uses db = ipcflow lock db -- echo ok",
		"sem db = 1\nstage a = ipcflow lock --timeout 1s db -- ipcflow lock db -- echo ok",
		"sem db = 1\nsem other = 1\nstage a uses db = ipcflow lock other -- echo ok",
		"sem db = 1\nstage a uses db = IPCFLOW_LOCK_TIMEOUT=1s ipcflow lock db -- echo inner",
		"sem db = 1\nstage a uses db = export IPCFLOW_LOCK_TIMEOUT=1s; ipcflow lock db -- echo inner",
		"sem db = 1\nstage a = ipcflow lock db -- echo ipcflow lock db",
	} {
		if _, err := Parse("f", []byte(src)); err != nil {
			t.Errorf("%q: %v", src, err)
		}
	}
}
