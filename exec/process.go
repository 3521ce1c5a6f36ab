package exec

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"

	"github.com/ipcflow/ipcflow/locks"
	"github.com/ipcflow/ipcflow/parser"
	"github.com/ipcflow/ipcflow/remote"
)

// lockSocket is where the run's lease server for `ipcflow lock` listens,
// in the run directory.
const lockSocket = "lock.sock"

// FlowNames are the names of its flow that a stage sees: the id in the
// names of the flow's semaphores and its run directory (rundir.Dir's ID
// and Path). --dry-run passes placeholders.
type FlowNames struct {
	ID, Dir string
}

// Process is exactly what one stage's process gets: built by one function,
// (*Plan).Process, for both --dry-run and the real start. Of a stage's
// types it is the third: parser.Stage is what the script says, StagePlan
// its fd table as planned, Process its process as built, and a flow's
// liveStage (supervise.go) its state while the flow runs.
type Process struct {
	Name string
	Fds  []End    // fd table
	Env  []string // complete environment
	Dir  string   // working directory ("" = ipcflow's own)
	// Direct exec: Path is the program (found on PATH), Argv its arguments.
	// NotFound: the program named by Argv[0] is not on PATH (status 127).
	Path     string
	Argv     []string
	NotFound bool
	// Shell: the command runs in the stage shell (a copy of ipcflow
	// running mvdan.cc/sh's interpreter); Argv is then that copy's argv.
	Shell bool
	// Bash: the command needs what the stage shell lacks, and runs as
	// `bash -c COMMAND`; Path is bash.
	Bash *parser.BashNeed
	// ScriptFile: a command too long for an argument (argvCommandMax) is
	// written to this file in the run directory when the stage starts,
	// and the shell (or bash) reads it from there.
	ScriptFile string
	// Replicas: the stage runs N copies under the replica runner (SPEC
	// 11, replicas.go); Path and Argv start the runner.
	Replicas *ReplicaProcess
	// Host: the stage runs there (SPEC 13, remote.go); Path and Argv
	// start its stand-in here, Remote is what the host runs.
	Host   string
	Remote *remote.Spec
}

// argvCommandMax is the longest command handed to the stage shell or bash
// as an argument. Linux refuses one argv string past MAX_ARG_STRLEN (128
// KiB) with E2BIG, and all of argv and the environment share ARG_MAX; a
// longer command (a large here-document) goes through a file, which a
// short command, the usual, does not pay for.
const argvCommandMax = 64 << 10

// scriptFileName is where the long command of stage name goes.
func scriptFileName(names FlowNames, name string) string {
	return filepath.Join(names.Dir, "stage-"+name+".sh")
}

// semPosixName is the POSIX name of the run's semaphore name.
func semPosixName(names FlowNames, name string) string { return "/ipcflow." + names.ID + "." + name }

// Processes builds every stage's Process for the flow named names, in the
// order of p.Stages: what --dry-run prints and newFlow starts.
func (p *Plan) Processes(names FlowNames) ([]*Process, error) {
	procs := make([]*Process, len(p.Stages))
	for i, sp := range p.Stages {
		var err error
		if procs[i], err = p.Process(sp, names); err != nil {
			return nil, err
		}
	}
	return procs, nil
}

// stageProcess builds what stage sp's process sees in the flow named
// names; Process (replicas.go) puts a replicated stage's copies under
// the replica runner.
func (p *Plan) stageProcess(sp *StagePlan, names FlowNames) (*Process, error) {
	st := sp.Stage
	pr := &Process{Name: st.Name, Fds: sp.Fds}

	env := slices.Clone(p.Environ)
	for _, v := range p.Params {
		env = append(env, v.Name+"="+v.Value)
	}
	for _, v := range p.Envs {
		env = append(env, v.Name+"="+v.Value)
	}
	for _, s := range p.Graph.Sems {
		env = append(env, locks.SemEnv(s.Name)+"="+semPosixName(names, s.Name))
	}
	if len(p.Graph.Sems) > 0 {
		env = append(env, locks.LockSocketEnv+"="+filepath.Join(names.Dir, lockSocket))
	}
	for _, port := range sp.Ports {
		if !port.Native {
			env = append(env, port.Name+"=/dev/fd/"+strconv.Itoa(port.Fd))
		}
	}
	env = append(env, p.nativeEnv(sp, names)...)
	if st.Host != nil {
		return p.remoteProcess(sp, names, pr, env)
	}

	if st.Dir != nil {
		d, err := assignValue(env, st.Dir)
		if err != nil {
			return nil, usagef("stage %s: dir: %v", st.Name, err)
		}
		pr.Dir = d
	}
	cwd := pr.Dir
	if cwd == "" || !filepath.IsAbs(cwd) {
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		cwd = filepath.Join(wd, cwd)
	}
	env = append(env, "PWD="+cwd)
	pr.Env = dedupEnv(env)

	// A restartable stage's copies differ only in IPCFLOW_RESTARTS
	// (restart.go): a command that names it runs in the shell, which
	// expands it for each copy, rather than as an argv expanded once.
	// A command too long for an argument goes to the shell through a
	// file (below): its builtin echo prints what exec would refuse. One
	// that needs bash (${x@Q}, printf %q) is bash's, not a program's.
	need := parser.NeedsBash(st.Script)
	if args := directArgs(st.Script, pr.Env, cwd); args != nil && need == nil && len(st.Command) <= argvCommandMax && !(st.Restart != nil && strings.Contains(st.Command, restartsEnv)) {
		path, err := interp.LookPathDir(cwd, expand.ListEnviron(pr.Env...), args[0])
		switch {
		case err == nil:
			pr.Argv, pr.Path = args, path
			return pr, nil
		case !interp.IsBuiltin(args[0]):
			pr.Argv, pr.NotFound = args, true
			return pr, nil
		}
		// A builtin with no program of its name here: the shell runs it.
	}
	if i := strings.IndexByte(st.Command, 0); i >= 0 {
		// No argv string can hold a NUL, and a shell would stop or skip
		// there: refuse, rather than run a part of the command.
		return nil, &UsageError{Positioned: true, Msg: (&parser.Error{File: p.Graph.File, Pos: st.ShellPos(syntax.NewPos(uint(i), 1, 1)),
			Msg: fmt.Sprintf("stage %s: the command has a NUL byte", st.Name)}).Error()}
	}
	long := len(st.Command) > argvCommandMax
	if long {
		pr.ScriptFile = scriptFileName(names, st.Name)
	}
	if need != nil {
		bash, err := interp.LookPathDir(cwd, expand.ListEnviron(pr.Env...), "bash")
		if err != nil {
			return nil, &UsageError{Positioned: true, Msg: (&parser.Error{File: p.Graph.File, Pos: st.ShellPos(need.Pos),
				Msg: fmt.Sprintf("stage %s: %s needs bash, which is not installed here (ipcflow's stage shell cannot do it)", st.Name, need.What)}).Error()}
		}
		pr.Bash, pr.Path, pr.Argv = need, bash, []string{"bash", "-c", st.Command}
		if long {
			pr.Argv = []string{"bash", pr.ScriptFile}
		}
		return pr, nil
	}
	path, argv, err := shellCommand(st.Name, len(sp.Fds), st.Command)
	if long {
		path, argv, err = shellCommandFile(st.Name, len(sp.Fds), pr.ScriptFile, len(st.Command))
	}
	if err != nil {
		return nil, err
	}
	pr.Shell, pr.Path, pr.Argv = true, path, argv
	return pr, nil
}

// simpleCall is the command of f when it is one simple command with
// words and nothing else: no assignment, redirection, negation, `&`,
// coprocess or comment, which a shell would have to do.
func simpleCall(f *syntax.File) *syntax.CallExpr {
	if f == nil || len(f.Stmts) != 1 || len(f.Last) > 0 {
		return nil
	}
	stmt := f.Stmts[0]
	if stmt.Negated || stmt.Background || stmt.Coprocess || len(stmt.Redirs) > 0 || len(stmt.Comments) > 0 {
		return nil
	}
	call, ok := stmt.Cmd.(*syntax.CallExpr)
	if !ok || len(call.Assigns) > 0 || len(call.Args) == 0 {
		return nil
	}
	return call
}

// directArgs returns the argv of a command that is one simple command
// running a program, expanded as the shell would (in the stage's
// environment and directory), or nil when the command needs a shell: a
// builtin, a function, a construct, a redirection, an assignment, a
// substitution, arithmetic, or a parameter only a shell knows ($$, $RANDOM).
func directArgs(f *syntax.File, env []string, cwd string) []string {
	call := simpleCall(f)
	if call == nil {
		return nil
	}
	for _, w := range call.Args {
		if !plainWord(w.Parts) {
			return nil
		}
	}
	cfg := &expand.Config{
		Env:      expand.ListEnviron(env...),
		ReadDir2: os.ReadDir, // globs, relative to PWD (the stage's dir)
	}
	args, err := expand.Fields(cfg, call.Args...)
	if err != nil || len(args) == 0 || isKeyword(args[0]) {
		return nil // the shell reports the error, or runs what it knows
	}
	if interp.IsBuiltin(args[0]) && !sameAsProgram(args) {
		return nil
	}
	return args
}

// sameAsProgram reports whether builtin call args does exactly what the
// program of the same name does, touching no shell state: then the stage
// execs the program (when PATH has it) instead of starting a shell to run
// the builtin, which costs a process start of its own. `echo` and
// `printf` differ from coreutils' only in --help and --version, and
// printf in -v (assign to a variable).
func sameAsProgram(args []string) bool {
	switch args[0] {
	case "true", "false", "test", "[", "kill":
		return true
	case "echo", "printf":
		format := ""
		if args[0] == "printf" && len(args) > 1 {
			format = args[1]
			if format == "--" && len(args) > 2 {
				format = args[2]
			}
		}
		if len(args) > 1 && (args[1] == "--help" || args[1] == "--version" || args[1] == "-v" && args[0] == "printf" || strings.Contains(format, "%q")) {
			return false
		}
		return true
	}
	return false
}

// plainWord reports whether word parts expand without a shell's state.
func plainWord(parts []syntax.WordPart) bool {
	for _, part := range parts {
		switch x := part.(type) {
		case *syntax.Lit, *syntax.SglQuoted:
		case *syntax.DblQuoted:
			if !plainWord(x.Parts) {
				return false
			}
		case *syntax.ParamExp:
			if x.Param == nil || !isPlainVarName(x.Param.Value) || x.Excl || x.Length || x.Width || x.Index != nil {
				return false
			}
			if x.Exp != nil && x.Exp.Word != nil && !plainWord(x.Exp.Word.Parts) {
				return false
			}
			if x.Repl != nil || x.Slice != nil {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// isPlainVarName: an ordinary variable, not one the shell computes.
func isPlainVarName(name string) bool {
	if name == "" || !(name[0] == '_' || name[0] >= 'A' && name[0] <= 'Z' || name[0] >= 'a' && name[0] <= 'z') {
		return false
	}
	switch name {
	case "RANDOM", "SRANDOM", "SECONDS", "LINENO", "BASHPID", "PPID", "UID", "EUID",
		"EPOCHSECONDS", "EPOCHREALTIME", "BASH", "BASH_VERSION", "PIPESTATUS", "FUNCNAME",
		"HOSTNAME", "OPTIND", "OPTARG", "DIRSTACK", "GROUPS", "SHLVL", "IFS":
		return false
	}
	return true
}

func isKeyword(s string) bool {
	switch s {
	case "!", "{", "}", "[[", "]]", "case", "do", "done", "elif", "else", "esac", "fi",
		"for", "function", "if", "in", "select", "then", "time", "until", "while", "coproc":
		return true
	}
	return false
}

// dedupEnv keeps the last value of each name, in first-seen order, so a
// param overrides an inherited variable of the same name.
func dedupEnv(env []string) []string {
	last := map[string]int{}
	for i, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		last[name] = i
	}
	out := make([]string, 0, len(last))
	for i, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if last[name] == i {
			out = append(out, kv)
		}
	}
	return out
}

// sortedUses is the order in which a stage takes its semaphores: by name,
// the same for every stage, so that two stages can't deadlock on them.
func sortedUses(sp *StagePlan) []string {
	var names []string
	for _, s := range sp.Stage.Uses {
		names = append(names, s.Name)
	}
	sort.Strings(names)
	return names
}

// cannotRun says, as bash would, why the program name (found or not on
// PATH) can't be run from dir: the exit status and the message. execErr is
// what execve said, when it got that far. 127 is "not there", 126 "there
// but not runnable".
func cannotRun(dir, name string, execErr error) (int, string) {
	if execErr == nil && !strings.Contains(name, "/") {
		return 127, "command not found"
	}
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		if execErr == nil {
			return 127, "No such file or directory"
		}
		return 127, "command not found"
	case fi.IsDir():
		return 126, "Is a directory"
	case errors.Is(execErr, unix.ENOENT):
		// The file is there; its #! interpreter is not.
		return 127, "cannot execute: required file not found"
	case execErr == nil || errors.Is(execErr, unix.EACCES):
		return 126, "Permission denied"
	default:
		return 126, "cannot execute: " + execErr.Error()
	}
}

// assignValue expands w as bash expands the value of an assignment
// (`X=WORD`): parameters expanded, quotes and backslashes removed, no
// field splitting, no globbing and no brace expansion. expand.Literal
// keeps unquoted backslashes (`a\ b` would stay `a\ b`), so this is
// expand.Fields with splitting off (IFS empty), globbing off (no ReadDir
// in the Config) and braces escaped (noBraces), joined back into one
// string.
//
// ipcflow expands these words itself, with no shell: a command or process
// substitution is an error (the parser refuses them, so this is for a
// Graph built some other way), and so is anything that makes
// mvdan.cc/sh's expander panic, such as a word part it needs a shell for.
func assignValue(environ []string, w *syntax.Word) (string, error) {
	return expandAssign(expand.ListEnviron(environ...), w)
}

// expandAssign is assignValue against an environment already built: the
// params' (paramEnv), which grows by one variable per word expanded.
func expandAssign(env expand.Environ, w *syntax.Word) (v string, err error) {
	if w == nil {
		return "", nil
	}
	defer func() {
		if r := recover(); r != nil {
			v, err = "", fmt.Errorf("cannot expand the word: %v", r)
		}
	}()
	cfg := &expand.Config{
		Env: emptyIFS{env},
		CmdSubst: func(io.Writer, *syntax.CmdSubst) error {
			return errors.New("command substitution is not allowed here (ipcflow expands the word itself, with no shell)")
		},
		ProcSubst: func(*syntax.ProcSubst) (string, error) {
			return "", errors.New("process substitution is not allowed here (ipcflow expands the word itself, with no shell)")
		},
	}
	fields, err := expand.Fields(cfg, noBraces(w))
	if err != nil {
		return "", err
	}
	return strings.Join(fields, ""), nil
}

// noBraces returns a copy of w whose unquoted literal braces are escaped.
// expand.Fields always does brace expansion, which bash does not do in
// an assignment: X={a,b} sets X to {a,b}, where Fields would give a and
// b, joined as ab. Only w's own literal parts can form a brace
// expression; quoted text and expansions inside it are never split.
func noBraces(w *syntax.Word) *syntax.Word {
	cp := *w
	cp.Parts = slices.Clone(w.Parts)
	for i, part := range cp.Parts {
		if lit, ok := part.(*syntax.Lit); ok && strings.ContainsAny(lit.Value, "{}") {
			esc := *lit
			esc.Value = escapeBraces(lit.Value)
			cp.Parts[i] = &esc
		}
	}
	return &cp
}

// escapeBraces puts a backslash before each brace of s that is not
// escaped already (a backslash and the byte after it stay as they are).
func escapeBraces(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s):
			b.WriteString(s[i : i+2])
			i++
		case c == '{' || c == '}':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
