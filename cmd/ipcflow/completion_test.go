package main

import (
	"bytes"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ipcflow/ipcflow/rundir"
)

// completionDir is a directory with scripts, another file and a
// subdirectory, for completions to choose from.
func completionDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"flow.ipcflow":  "param FILE = data.txt\nparam N = 10\nstage a = head -n \"$N\" \"$FILE\"\n",
		"other.ipcflow": "stage a = true\n",
		"notes.txt":     "not a script\n",
		"sub/x.ipcflow": "stage a = true\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// completionCase is a command line typed up to the cursor and the
// candidates the shell must be given for it: all of want, none of deny.
type completionCase struct {
	line       string
	want, deny []string
}

var completionCases = []completionCase{
	{"ipcflow ", []string{"run", "check", "graph", "completion", "man", "ps", "flow.ipcflow", "sub/"}, []string{"notes.txt"}},
	{"ipcflow ru", []string{"run"}, []string{"check"}},
	{"ipcflow completion ", []string{"bash", "zsh", "fish"}, nil},
	{"ipcflow graph --format ", []string{"dot", "mermaid"}, []string{"flow.ipcflow"}},
	{"ipcflow graph --format=m", []string{"mermaid"}, []string{"dot"}},
	{"ipcflow run --", []string{"--dry-run", "--grace", "--timeout", "--color"}, nil},
	{"ipcflow run --color ", []string{"auto", "always", "never"}, nil},
	{"ipcflow run --grace ", []string{"5s", "100ms"}, nil},
	{"ipcflow run --timeout 3", []string{"3ms", "3s", "3m", "3h"}, nil},
	{"ipcflow watch --debounce ", []string{"100ms"}, nil},
	{"ipcflow run ", []string{"flow.ipcflow", "other.ipcflow", "sub/"}, []string{"notes.txt", "run"}},
	{"ipcflow check fl", []string{"flow.ipcflow"}, []string{"other.ipcflow"}},
	{"ipcflow run flow.ipcflow ", []string{"FILE=data.txt", "N=10"}, nil},
	{"ipcflow run flow.ipcflow N", []string{"N=10"}, []string{"FILE=data.txt"}},
	{"ipcflow run flow.ipcflow N=", []string{"10"}, nil},
	{"ipcflow run flow.ipcflow N=5 ", []string{"FILE=data.txt"}, []string{"N=10"}},
	{"ipcflow run --label --grace 1s flow.ipcflow ", []string{"FILE=data.txt", "N=10"}, nil},
	{"ipcflow flow.ipcflow ", []string{"FILE=data.txt", "N=10"}, nil},
	{"ipcflow watch flow.ipcflow --on sub ", []string{"N=10"}, nil},
	{"ipcflow bench ", []string{"pipe", "shm", "tcp"}, nil},
	{"ipcflow help ", []string{"run", "graph"}, nil},
}

// liveRun makes a live run (its directory, locked by this process) under
// a private XDG_RUNTIME_DIR and returns what `ps RUN` must offer for it.
func liveRun(t *testing.T) []string {
	t.Helper()
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	r, err := rundir.Create()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Remove() })
	return []string{r.ID, strconv.Itoa(os.Getpid())}
}

// Bash asked as it asks at a Tab: the command that `complete -p ipcflow`
// registers (after sourcing `ipcflow completion bash`), started with
// COMP_LINE, COMP_POINT and the words bash gives it.
func TestBashCompletion(t *testing.T) {
	bash, err := osexec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed: bash completion not tested")
	}
	dir := completionDir(t)
	bin := ipcflowOnPath(t)
	cases := append(slices.Clone(completionCases), completionCase{line: "ipcflow ps ", want: liveRun(t)})
	const driver = `
set -e
source <(ipcflow completion bash)
spec=$(complete -p ipcflow)
case $spec in
*" -C "*) ;;
*) echo "not a -C completion: $spec" >&2; exit 1 ;;
esac
cmd=${spec##* -C }
cmd=${cmd% ipcflow}
eval "cmd=$cmd"
line=$1
read -ra words <<<"$line"
[[ $line == *" " ]] && words+=("")
n=${#words[@]}
COMP_LINE=$line COMP_POINT=${#line} "$cmd" ipcflow "${words[n-1]}" "${words[n-2]}"
`
	for _, c := range cases {
		cmd := osexec.Command(bash, "--norc", "--noprofile", "-c", driver, "bash", c.line)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), asIpcflowEnv+"=1")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("%q: %v\n%s", c.line, err, errb.String())
		}
		checkCandidates(t, "bash", c, out.String())
	}
}

// checkCandidates holds out (one candidate a line) to c.
func checkCandidates(t *testing.T, shell string, c completionCase, out string) {
	t.Helper()
	got := strings.Fields(out)
	for _, w := range c.want {
		if !slices.Contains(got, w) {
			t.Errorf("%s %q: %q not among the candidates %q", shell, c.line, w, got)
		}
	}
	for _, w := range c.deny {
		if slices.Contains(got, w) {
			t.Errorf("%s %q: %q among the candidates %q", shell, c.line, w, got)
		}
	}
}

// zsh (through bashcompinit, as kong-completion sets it up) and fish,
// asked the way they ask: where they are installed.
func TestZshAndFishCompletion(t *testing.T) {
	dir := completionDir(t)
	bin := ipcflowOnPath(t)
	env := append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), asIpcflowEnv+"=1", "HOME="+t.TempDir())
	cases := []completionCase{
		{"ipcflow gr", []string{"graph"}, nil},
		{"ipcflow graph --format ", []string{"dot", "mermaid"}, nil},
		{"ipcflow run flow.ipcflow ", []string{"FILE=data.txt", "N=10"}, nil},
		{"ipcflow run flow.ipcflow N=", []string{"N=10"}, nil},
		{"ipcflow graph --format=m", []string{"--format=mermaid"}, nil},
	}
	t.Run("zsh", func(t *testing.T) {
		zsh, err := osexec.LookPath("zsh")
		if err != nil {
			t.Skip("zsh is not installed (apt-get install zsh): zsh completion not tested")
		}
		// The function bashcompinit registers for kong-completion's
		// `complete -C`, called as zsh's completion system calls it:
		// words, CURRENT and PREFIX set, compadd taking the matches.
		const driver = `
source <(ipcflow completion zsh)
line=$1
words=(${(z)line})
[[ $line == *" " ]] && words+=("")
CURRENT=${#words}
PREFIX=${words[CURRENT]}
compadd() { while (( $# )) && [[ $1 != - ]]; do shift; done; shift; (( $# )) && print -rl -- "$@"; return 0 }
_default() { return 1 }
[[ -n ${_comps[ipcflow]} ]] || { print -u2 "no completion registered"; exit 1 }
eval "${_comps[ipcflow]}"
`
		for _, c := range cases {
			cmd := osexec.Command(zsh, "-f", "-c", "autoload -U compinit && compinit -u -D; "+driver, "zsh", c.line)
			cmd.Dir, cmd.Env = dir, env
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Run(); err != nil {
				t.Fatalf("%q: %v\n%s%s", c.line, err, out.String(), errb.String())
			}
			checkCandidates(t, "zsh", c, out.String())
		}
	})
	t.Run("fish", func(t *testing.T) {
		fish, err := osexec.LookPath("fish")
		if err != nil {
			t.Skip("fish is not installed (apt-get install fish): fish completion not tested")
		}
		for _, c := range cases {
			script := fmt.Sprintf("ipcflow completion fish | source; complete -C %s", fishQuote(c.line))
			cmd := osexec.Command(fish, "--no-config", "-c", script)
			cmd.Dir, cmd.Env = dir, env
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Run(); err != nil {
				t.Fatalf("%q: %v\n%s", c.line, err, errb.String())
			}
			// fish prints "candidate\tdescription": the candidate is the first field.
			var got []string
			for _, l := range strings.Split(out.String(), "\n") {
				got = append(got, strings.SplitN(l, "\t", 2)[0])
			}
			checkCandidates(t, "fish", c, strings.Join(got, "\n"))
		}
	})
}

func fishQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `\'`) + "'" }

// A completion call does not leave COMP_LINE and COMP_POINT to what it
// might start; fish and zsh, which replace the whole word, get what stands before
// a '=' with each candidate; and COMP_LINE left in the environment of a
// plain command line does not turn it into a completion.
func TestCompletionCall(t *testing.T) {
	t.Setenv("COMP_LINE", "ipcflow graph --format=m")
	t.Setenv("COMP_POINT", "24")
	line, whole, ok := completionRequest(nil)
	if !ok || !whole || line != "ipcflow graph --format=m" {
		t.Fatalf("completionRequest(no arguments) = %q, %v, %v", line, whole, ok)
	}
	var out, errb bytes.Buffer
	if code := completeLine(line, whole, &out, &errb); code != 0 || out.String() != "--format=mermaid\n" {
		t.Errorf("whole word: status %d, candidates %q, stderr %q", code, out.String(), errb.String())
	}
	if _, set := os.LookupEnv("COMP_LINE"); set {
		t.Error("COMP_LINE still set after completing")
	}
	if _, set := os.LookupEnv("COMP_POINT"); set {
		t.Error("COMP_POINT still set after completing")
	}

	t.Setenv("COMP_LINE", "ipcflow ver")
	if _, _, ok := completionRequest([]string{"version"}); ok {
		t.Error("ipcflow version with COMP_LINE set was taken for a completion")
	}
	out.Reset()
	if code := Main([]string{"version"}, nil, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "ipcflow ") {
		t.Errorf("ipcflow version with COMP_LINE set: status %d, %q", code, out.String())
	}
}

// `ipcflow completion SHELL` prints code that names this binary; an
// unknown shell is one line and status 2.
func TestCompletionScript(t *testing.T) {
	self, _ := os.Executable()
	for shell, want := range map[string]string{"bash": "complete ", "zsh": "bashcompinit", "fish": "complete -f -c ipcflow"} {
		var out, errb bytes.Buffer
		if code := Main([]string{"completion", shell}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), want) || !strings.Contains(out.String(), self) {
			t.Errorf("completion %s: status %d, %q, stderr %q", shell, code, out.String(), errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := Main([]string{"completion", "tcsh"}, nil, &out, &errb); code != 2 || out.Len() > 0 || !strings.HasPrefix(errb.String(), "ipcflow: ") {
		t.Errorf("completion tcsh: status %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}
