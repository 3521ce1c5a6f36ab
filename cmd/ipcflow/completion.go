package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	kongcompletion "github.com/jotaen/kong-completion"
	"github.com/posener/complete"

	"github.com/ipcflow/ipcflow/parser"
	"github.com/ipcflow/ipcflow/rundir"
)

// CompletionCmd is `ipcflow completion bash|zsh|fish` (SPEC 15): it prints
// the shell code that makes the shell ask ipcflow itself for completions
// (kong-completion's, naming this binary by its absolute path). Install:
//
//	bash: source <(ipcflow completion bash)          in ~/.bashrc
//	zsh:  source <(ipcflow completion zsh)           in ~/.zshrc
//	fish: ipcflow completion fish | source           in ~/.config/fish/config.fish
//
// The shell then runs ipcflow with COMP_LINE (and COMP_POINT) set: Main
// hands such a call to completeLine before anything else.
type CompletionCmd struct {
	Shell string `arg:"" enum:"bash,zsh,fish" help:"The shell: bash, zsh or fish."`
}

// Help is shown by `ipcflow completion --help`.
func (CompletionCmd) Help() string {
	return `Print the code that makes SHELL complete ipcflow's commands, flags and
their values, .ipcflow files, live runs for 'ps RUN', and the params of the
script already on the command line (NAME=DEFAULT). Load it from the
shell's start-up file:

  bash (~/.bashrc):                   source <(ipcflow completion bash)
  zsh (~/.zshrc):                     source <(ipcflow completion zsh)
  fish (~/.config/fish/config.fish):  ipcflow completion fish | source`
}

func (c *CompletionCmd) Run(kctx *kong.Context) error {
	// kong-completion prints its code only with Code set (else a note on
	// how to install it, which the README and --help say instead).
	lib := kongcompletion.Completion{Shell: c.Shell, Code: true}
	return lib.Run(kctx)
}

// completionRequest tells a call from a shell's completion from a command
// line: COMP_LINE is set and the arguments are what the shells pass:
// bash's `complete -C` gives the command's name, the word being completed
// and the one before it; fish's function and zsh's bashcompinit give none.
// line is COMP_LINE cut at COMP_POINT. wholeWord says that the shell
// replaces the whole word with a candidate (fish, zsh), where bash
// replaces only what follows its last '='.
func completionRequest(args []string) (line string, wholeWord, ok bool) {
	line = os.Getenv("COMP_LINE")
	if line == "" {
		return "", false, false
	}
	first, _, _ := strings.Cut(strings.TrimLeft(line, " \t"), " ")
	switch {
	case len(args) == 0:
		wholeWord = true
	case len(args) == 3 && (args[0] == first || filepath.Base(args[0]) == filepath.Base(first)):
	default:
		return "", false, false
	}
	if p, err := strconv.Atoi(os.Getenv("COMP_POINT")); err == nil && p >= 0 && p < len(line) {
		line = line[:p]
	}
	return line, wholeWord, true
}

// completeLine prints the candidates for the word at the end of line, one per
// line, as `complete -C` and fish's `complete -a` read them, and returns
// the exit status. The candidates come from kong's model of the whole
// command line (kong-completion), with the predictors below for what the
// model cannot know.
func completeLine(line string, wholeWord bool, stdout, stderr io.Writer) int {
	// Nothing ipcflow might start while completing is itself a completion.
	os.Unsetenv("COMP_LINE")
	os.Unsetenv("COMP_POINT")

	k, err := newKong(&CLI{}, stdout, stderr, func(int) {})
	if err != nil {
		fmt.Fprintf(stderr, "ipcflow: %v\n", err)
		return 70
	}
	p := &predictors{line: line, argFlags: argFlags(k.Model.Node)}
	cmd, err := kongcompletion.Command(k,
		kongcompletion.WithPredictor("script", complete.PredictFiles("*.ipcflow")),
		kongcompletion.WithPredictor("params", complete.PredictFunc(p.params)),
		kongcompletion.WithPredictor("path", complete.PredictFiles("*")),
		kongcompletion.WithPredictor("edgetype", complete.PredictSet(edgeTypeWords...)),
		kongcompletion.WithPredictor("command", complete.PredictSet(commands...)),
	)
	if err != nil {
		fmt.Fprintf(stderr, "ipcflow: completion: %v\n", err)
		return 70
	}
	durations(k.Model.Node, &cmd)
	// `ps RUN`: the live runs. Set here rather than by a tag, so that the
	// ps command keeps its struct to itself.
	if ps, ok := cmd.Sub["ps"]; ok {
		if pp, ok := ps.Args.(*kongcompletion.PositionalPredictor); ok && len(pp.Predictors) > 0 {
			pp.Predictors[0] = complete.PredictFunc(liveRuns)
		}
	}
	// `ipcflow FILE [NAME=VALUE...]`: a script where a command may stand,
	// then its params.
	cmd.Args = complete.PredictFunc(func(a complete.Args) []string {
		if len(a.Completed) == 0 {
			return complete.PredictFiles("*.ipcflow").Predict(a)
		}
		return p.params(a)
	})

	a := completionArgs(line)
	var words []string
	for _, w := range cmd.Predict(a) {
		if strings.HasPrefix(w, a.Last) {
			words = append(words, w)
		}
	}
	if len(words) == 0 {
		return 0
	}
	// bash completes the text after a '=' as a word of its own
	// (COMP_WORDBREAKS); fish and zsh replace the whole word, so their
	// candidates carry what stands before the '='.
	if cur := currentWord(line); wholeWord && strings.Contains(cur, "=") {
		before := cur[:strings.LastIndex(cur, "=")+1]
		for i := range words {
			words[i] = before + words[i]
		}
	}
	slices.Sort(words)
	fmt.Fprintln(stdout, strings.Join(slices.Compact(words), "\n"))
	return 0
}

// completionArgs splits line as posener/complete's Complete does (whose
// reading of COMP_LINE from the environment is not used: the variables
// are gone by then): blank-separated fields, an empty last one when the
// line ends in a blank, and the last field cut at each '=' (as bash and
// zsh complete what follows a '=' as a word of its own).
func completionArgs(line string) complete.Args {
	parts := strings.Fields(line)
	if line == "" || strings.ContainsAny(line[len(line)-1:], " \t") {
		parts = append(parts, "")
	}
	if n := len(parts); n > 0 {
		parts = append(parts[:n-1], strings.Split(parts[n-1], "=")...)
	}
	var a complete.Args
	if len(parts) > 1 {
		a.All = parts[1:]
		a.Completed = parts[1 : len(parts)-1]
		a.Last = parts[len(parts)-1]
	}
	if n := len(a.Completed); n > 0 {
		a.LastCompleted = a.Completed[n-1]
	}
	return a
}

// edgeTypeWords are the words `ipcflow bench` takes.
var edgeTypeWords = []string{"pipe", "fifo", "mq", "shm", "mmap", "socket", "unix", "tcp", "udp"}

// currentWord is the word being completed: the text after the line's last
// blank.
func currentWord(line string) string {
	return line[strings.LastIndexAny(line, " \t")+1:]
}

// predictors are the completions that need the line itself.
type predictors struct {
	line     string
	argFlags map[string]bool // flags that take a value ("--grace", "-f")
}

// params predicts the params of the script on the line (the first word
// after the command that is neither a flag nor a flag's value): NAME=DEFAULT
// for each param not given yet, or, after "NAME=", that param's default.
// The script is parsed with the project's parser, never run: a default is
// shown as written, unexpanded.
func (p *predictors) params(a complete.Args) []string {
	script := ""
	skip := false
	for _, w := range a.Completed {
		switch {
		case skip:
			skip = false
		case strings.HasPrefix(w, "-"):
			skip = p.argFlags[w] && !strings.Contains(w, "=")
		case slices.Contains(commands, w) && script == "":
			// the command itself, when a.Completed starts at the root
		default:
			script = w
		}
		if script != "" {
			break
		}
	}
	if script == "" {
		return nil
	}
	decls := scriptParams(script)
	cur := currentWord(p.line)
	if name, _, ok := strings.Cut(cur, "="); ok {
		for _, d := range decls {
			if d.Name.Name == name {
				return []string{d.Text}
			}
		}
		return nil
	}
	given := map[string]bool{}
	for _, w := range strings.Fields(p.line[:len(p.line)-len(cur)]) {
		if name, _, ok := strings.Cut(w, "="); ok {
			given[name] = true
		}
	}
	var out []string
	for _, d := range decls {
		if !given[d.Name.Name] {
			out = append(out, d.Name.Name+"="+d.Text)
		}
	}
	return out
}

// scriptParams are the param declarations of the script at path, in order,
// as far as it parses; none when it cannot be read.
func scriptParams(path string) []*parser.VarDecl {
	src, err := parser.ReadScript(path)
	if err != nil {
		return nil
	}
	f, _ := parser.ParseAST(path, src)
	if f == nil {
		return nil
	}
	var out []*parser.VarDecl
	for _, s := range f.Stmts {
		if d, ok := s.(*parser.VarDecl); ok && d.Kind == "param" {
			out = append(out, d)
		}
	}
	return out
}

// liveRuns predicts `ps RUN`: each live run's id and its ipcflow's pid.
func liveRuns(complete.Args) []string {
	var out []string
	for _, r := range rundir.Live() {
		out = append(out, r.ID)
		if r.PID > 0 {
			out = append(out, strconv.Itoa(r.PID))
		}
	}
	return out
}

// argFlags lists the flags of node and below that take a value.
func argFlags(node *kong.Node) map[string]bool {
	m := map[string]bool{}
	var walk func(*kong.Node)
	walk = func(n *kong.Node) {
		for _, f := range n.Flags {
			if f.Value.IsBool() {
				continue
			}
			m["--"+f.Name] = true
			if f.Short != 0 {
				m["-"+string(f.Short)] = true
			}
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(node)
	return m
}

var durationType = reflect.TypeFor[time.Duration]()

// durations gives every flag that takes a duration (--grace, --timeout,
// --debounce, lock's --timeout) the duration predictor, walking kong's
// model beside the completion tree built from it.
func durations(node *kong.Node, cmd *complete.Command) {
	for _, f := range node.Flags {
		if f.Target.Type() == durationType {
			cmd.GlobalFlags["--"+f.Name] = complete.PredictFunc(predictDuration)
		}
	}
	for _, child := range node.Children {
		if sub, ok := cmd.Sub[child.Name]; ok {
			durations(child, &sub)
			cmd.Sub[child.Name] = sub
		}
	}
}

// predictDuration offers units after a number being typed ("5" gives 5ms,
// 5s, 5m, 5h), else a few common durations.
func predictDuration(a complete.Args) []string {
	if n := a.Last; n != "" && strings.Trim(n, "0123456789.") == "" {
		return []string{n + "ms", n + "s", n + "m", n + "h"}
	}
	return []string{"100ms", "500ms", "1s", "5s", "30s", "1m", "10m", "1h"}
}
