// Package editors holds the editor support for .ipcflow scripts (a
// TextMate grammar for VS Code and others, under vscode/; a Vim syntax
// file with file-type detection, under vim/) and, here, the Go tests that
// drive their own test tools: vscode-tmgrammar-test (npm) and a headless
// Vim. Each test skips with a message where its tool cannot be had.
package editors

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ipcflow/ipcflow/parser"
)

// The corpus the grammar's snapshots are taken of is real flows: every
// example, byte for byte, and more scripts, each one that checks.
func TestCorpusIsRealFlows(t *testing.T) {
	corpus, _ := filepath.Glob("vscode/test/corpus/*.ipcflow")
	examples, _ := filepath.Glob("../examples/*.ipcflow")
	if len(examples) == 0 || len(corpus) <= len(examples) {
		t.Fatalf("%d examples, %d scripts in the corpus", len(examples), len(corpus))
	}
	for _, ex := range examples {
		want, _ := os.ReadFile(ex)
		got, err := os.ReadFile(filepath.Join("vscode/test/corpus", filepath.Base(ex)))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("the corpus's copy of %s differs or is missing (%v): cp examples/*.ipcflow editors/vscode/test/corpus/, then update the snapshots (npm run snap-update in editors/vscode)", ex, err)
		}
	}
	for _, f := range corpus {
		src, _ := os.ReadFile(f)
		if _, err := parser.Parse(f, src); err != nil {
			t.Errorf("%s does not check:\n%v", f, err)
		}
		if _, err := os.Stat(f + ".snap"); err != nil {
			t.Errorf("%s has no snapshot: npm run snap-update in editors/vscode", f)
		}
	}
}

// The grammar: the JSON is what the YAML builds, the scope assertions of
// vscode/test/*.test.ipcflow hold, and every corpus script tokenizes as
// its snapshot says (vscode-tmgrammar-test and -snap, run by npm test).
func TestTextMateGrammar(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed (apt-get install nodejs npm): the TextMate grammar is not tested")
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("npm is not installed (apt-get install npm): the TextMate grammar is not tested")
	}
	if _, err := os.Stat("vscode/node_modules/.bin/vscode-tmgrammar-snap"); err != nil {
		cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = "vscode"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Skipf("npm ci in editors/vscode failed (no registry here?): the TextMate grammar is not tested\n%s", out)
		}
	}
	cmd := exec.Command(npm, "test", "--silent")
	cmd.Dir = "vscode"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("npm test in editors/vscode: %v\n%s", err, out)
	}
	// A run that tested nothing passes too: say what it checked.
	for _, want := range []string{"grammar.test.ipcflow", "wordfreq.ipcflow run successfully", "edges.ipcflow run successfully"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("npm test did not report %q:\n%s", want, out)
		}
	}
}

// vimReport is a Vim script whose Report(file) writes the file type, then
// for every character of the buffer "LINE:COL:" and its stack of syntax
// groups, innermost last.
const vimReport = `
set nocompatible
let &runtimepath = $IPCFLOW_VIM . ',' . &runtimepath
filetype plugin on
syntax on
function! Report(out) abort
  let lines = ['filetype=' . &filetype]
  for l in range(1, line('$'))
    for c in range(1, len(getline(l)))
      call add(lines, l . ':' . c . ':' . join(map(synstack(l, c), 'synIDattr(v:val, "name")'), '/'))
    endfor
  endfor
  call writefile(lines, a:out)
endfunction
`

// vimSyntax opens file in a headless Vim with editors/vim first in its
// runtime path and returns the file type it chose and the syntax groups
// at each position.
func vimSyntax(t *testing.T, vim, file string) (string, map[[2]int][]string) {
	t.Helper()
	dir := t.TempDir()
	script, out := filepath.Join(dir, "report.vim"), filepath.Join(dir, "report.txt")
	if err := os.WriteFile(script, []byte(vimReport), 0o644); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("vim")
	cmd := exec.Command(vim, "-Nu", "NONE", "-i", "NONE", "-es",
		"-c", "source "+script, "-c", "edit "+file, "-c", "call Report('"+out+"')", "-c", "qa!")
	cmd.Env = append(os.Environ(), "IPCFLOW_VIM="+abs, "HOME="+dir)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("vim on %s: %v\n%s", file, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	groups := map[[2]int][]string{}
	for _, l := range lines[1:] {
		var line, col int
		var stack string
		if i := strings.Index(l, ":"); i > 0 {
			if j := strings.Index(l[i+1:], ":"); j >= 0 {
				fmt.Sscan(l[:i], &line)
				fmt.Sscan(l[i+1:i+1+j], &col)
				stack = l[i+2+j:]
			}
		}
		if stack != "" {
			groups[[2]int{line, col}] = strings.Split(stack, "/")
		}
	}
	return strings.TrimPrefix(lines[0], "filetype="), groups
}

// Vim: file-type detection by name and by #! line, and the highlight
// groups Vim gives the parts of real scripts (synstack/synIDattr):
// ipcflow's own groups for the language, sh.vim's inside stage commands,
// over several lines where the shell needs them.
func TestVimSyntax(t *testing.T) {
	vim, err := exec.LookPath("vim")
	if err != nil {
		t.Skip("vim is not installed (apt-get install vim): the Vim syntax is not tested")
	}
	if out, _ := exec.Command(vim, "--version").Output(); !bytes.Contains(out, []byte("+syntax")) {
		t.Skip("this vim has no +syntax (vim-tiny?): the Vim syntax is not tested")
	}

	dir := t.TempDir()
	for name, body := range map[string]string{
		"noext":    "#!/usr/bin/env ipcflow\nstage a = true\n",
		"flagged":  "#!/usr/bin/env -S ipcflow run --timeout=5s\nstage a = true\n",
		"other.sh": "#!/bin/sh\necho ipcflow\n",
	} {
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755)
	}
	for name, want := range map[string]string{"noext": "ipcflow", "flagged": "ipcflow", "other.sh": "sh"} {
		if ft, _ := vimSyntax(t, vim, filepath.Join(dir, name)); ft != want {
			t.Errorf("%s: filetype %q, want %q", name, ft, want)
		}
	}

	type at struct {
		line, word string // the first line starting with line, and in it word (at its ^, if it has one)
		group      string // a group in the stack there; "sh*": innermost is sh.vim's
	}
	for file, checks := range map[string][]at{
		"../examples/wordfreq.ipcflow": {
			{"#!/usr/bin/env", "#!", "ipcflowShebang"},
			{"param FILE", "param", "ipcflowDecl"},
			{"param FILE", "FILE", "ipcflowVarName"},
			{"stage words", "stage", "ipcflowStageKw"},
			{"stage words", "words", "ipcflowStageName"},
			{"stage words", "'A-Za-z'", "sh*"},
			{"stage words", "\"$FILE\"", "ipcflowCommand"},
			{"stage count", "|", "sh*"},
			{"words -> lower", "->", "ipcflowArrow"},
			{"words -> lower", "fifo", "ipcflowType"},
			{"words -> lower", "size", "ipcflowOption"},
			{"words -> lower", "1MiB", "ipcflowSize"},
		},
		"../examples/missing.ipcflow": {
			{"stage missing", "(^in d", "ipcflowDirection"},
			{"stage missing", "in ^d)", "ipcflowPortName"},
			{"dict -> missing.d", "missing.^d", "ipcflowPortRef"},
		},
		"vscode/test/corpus/multiline.ipcflow": {
			{"  echo \"line $i\"", "echo", "sh*"},
			{"done", "done", "sh*"},
			{"  | cat", "cat", "sh*"},
			{"two'", "two", "sh*"},
			{" b", "b", "sh*"},
			{"stage cond", "stage", "ipcflowStageKw"},
			{"stage cond", "if", "sh*"},
			{"gen -> filter", "->", "ipcflowArrow"},
		},
		"vscode/test/corpus/edges.ipcflow": {
			{"param DIR", "IPCFLOW_SCRIPT_DIR", "ipcflowParamUse"},
			{"param LOG", "$DIR", "ipcflowParamUse"},
			{"param LOG", "#", "ipcflowComment"},
			{"sem   disk", "2", "ipcflowNumber"},
			{"stage grep[4]", "4", "ipcflowNumber"},
			{"stage save", "uses", "ipcflowClause"},
			{"stage save", "after", "ipcflowClause"},
			{"sorter -[socket udp]", "udp", "ipcflowSocket"},
			{"grep -[mmap", "$DIR", "ipcflowParamUse"},
			{"side -[fifo", "/tmp/side.fifo", "ipcflowOptValue"},
			{"{native_end, save}", "stdout", "ipcflowStream"},
			{"{native_end, save}", "1GiB", "ipcflowSize"},
		},
	} {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(src), "\n")
		_, groups := vimSyntax(t, vim, file)
		for _, c := range checks {
			n := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, c.line) })
			word, mark := strings.ReplaceAll(c.word, "^", ""), max(0, strings.Index(c.word, "^"))
			if n < 0 || !strings.Contains(lines[n], word) {
				t.Fatalf("%s: no line %q with %q", file, c.line, word)
			}
			col := strings.Index(lines[n], word) + mark + 1
			stack := groups[[2]int{n + 1, col}]
			ok := slices.Contains(stack, c.group)
			if c.group == "sh*" {
				ok = len(stack) > 0 && (strings.HasPrefix(stack[len(stack)-1], "sh") || strings.HasPrefix(stack[len(stack)-1], "ksh"))
			}
			if !ok {
				t.Errorf("%s:%d:%d (%q in %q): groups %v, want %s", file, n+1, col, c.word, lines[n], stack, c.group)
			}
		}
	}
}
