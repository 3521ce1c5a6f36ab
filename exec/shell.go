package exec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/ipcflow/ipcflow/isolate"
	"golang.org/x/sys/unix"
	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"
)

// The stage shell: a stage whose command is more than one program runs in
// a copy of ipcflow (role "sh") that interprets the command with
// mvdan.cc/sh's bash dialect. It needs neither /bin/sh nor bash. Its
// standard streams and port fds (3 on) are the stage's, inherited as is;
// programs it starts get the same fds at the same numbers, so /dev/fd/N in
// a port variable means the same thing to the shell and to its programs.
//
//	argv: ipcflow __ipcflow_internal sh NAME NFDS COMMAND
//	      ipcflow __ipcflow_internal sh NAME NFDS -file PATH LENGTH
//
// The second form is for a command too long for an argument
// (argvCommandMax): it is read from PATH, which must hold exactly LENGTH
// bytes, so that no byte of it can go missing on the way.

// shellCommand returns the path and argv that run command for stage name,
// whose fd table has nfds entries.
func shellCommand(name string, nfds int, command string) (string, []string, error) {
	return internalCommand("sh", name, strconv.Itoa(nfds), command)
}

// shellCommandFile is shellCommand for a command of length bytes that
// the stage shell reads from the file path.
func shellCommandFile(name string, nfds int, path string, length int) (string, []string, error) {
	return internalCommand("sh", name, strconv.Itoa(nfds), "-file", path, strconv.Itoa(length))
}

// shellRole is the "sh" role: it returns the command's exit status. When the
// command's last program was killed by SIGPIPE the shell dies of SIGPIPE
// too, so ipcflow sees what it would have seen had it exec'd that program.
func shellRole(args []string) int {
	if len(args) == 5 && args[2] == "-file" {
		command, err := readCommand(args[3], args[4])
		if err != nil {
			fmt.Fprintf(os.Stderr, "ipcflow: stage %s: %v\n", args[0], err)
			return 70
		}
		args = []string{args[0], args[1], command}
	}
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "ipcflow: internal role sh: want NAME NFDS COMMAND or NAME NFDS -file PATH LENGTH")
		return 70
	}
	closeStdioAgain()
	name, command := args[0], args[2]
	nfds, err := strconv.Atoi(args[1])
	if err != nil || nfds < 3 {
		fmt.Fprintf(os.Stderr, "ipcflow: stage %s: bad fd count %q\n", name, args[1])
		return 70
	}
	file, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(command), name)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ipcflow: stage %s: %v\n", name, err)
		return 2
	}
	// The port fds, to hand on to every program at the same numbers.
	extra := make([]*os.File, 0, nfds-3)
	for fd := 3; fd < nfds; fd++ {
		extra = append(extra, os.NewFile(uintptr(fd), "/dev/fd/"+strconv.Itoa(fd)))
	}
	// The stage's pids limit, for each program (isolate.Programs), taken
	// out of the environment before the interpreter copies it.
	progs := isolate.TakePrograms()
	// What writeBuiltin must leave alone: a function of the script named
	// echo or printf; and whether SIGPIPE was ignored from the start.
	funcs := scriptFuncs(file)
	pipeIgnored := signal.Ignored(unix.SIGPIPE)
	traps := newShellTraps()
	foregroundDone := make(chan struct{})
	r, err := interp.New(
		interp.StdIO(os.Stdin, os.Stdout, os.Stderr),
		interp.Env(expand.ListEnviron(os.Environ()...)),
		interp.ExecHandlers(func(next interp.ExecHandlerFunc) interp.ExecHandlerFunc {
			return stageExec(name, extra, progs, traps, foregroundDone)
		}),
		interp.CallHandler(func(ctx context.Context, args []string) ([]string, error) {
			if call := traps.pendingCall(args); call != nil && args[0] != detachedMarker {
				return call, nil
			}
			switch {
			case args[0] == foregroundDoneName:
				close(foregroundDone)
				return []string{":"}, nil
			case args[0] == detachedMarker && (len(args) == 1 || interp.IsBuiltin(args[1])):
				args = args[1:] // a builtin, not a program to let go of
				if len(args) == 0 {
					return []string{":"}, nil
				}
			}
			if (args[0] == "echo" || args[0] == "printf") && !funcs[args[0]] {
				sigpipeKills := !pipeIgnored && !traps.trapped(unix.SIGPIPE)
				if call := writeBuiltin(ctx, args, sigpipeKills); call != nil {
					return call, nil
				}
			}
			return stageBuiltins(ctx, args, traps)
		}),
	)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ipcflow: stage %s: %v\n", name, err)
		return 70
	}
	err = r.Run(context.Background(), withWait(markDetached(file)))
	status := 0
	if err != nil {
		code, ok := interp.IsExitStatus(err)
		if !ok {
			fmt.Fprintf(os.Stderr, "ipcflow: stage %s: %v\n", name, err)
			return 1
		}
		status = int(code)
	}
	if status == 128+int(unix.SIGPIPE) {
		dieOf(unix.SIGPIPE)
	}
	return status
}

// writeBuiltin runs echo or printf itself, writing what the interpreter's
// would (its builtin.go), so that a failed write is seen: the
// interpreter's builtins ignore their write errors, where bash says
// `echo: write error: No space left on device` and returns 1. It returns
// the call that stands for the builtin now (`:` or `false` for its
// status; `exit 141` for a stage SIGPIPE would end), or nil to leave the
// builtin to the interpreter (a usage or format error, which it
// reports). A write of nothing writes nothing, as bash's.
//
// A write into a pipe whose reader has gone kills bash with SIGPIPE, and
// so ends `while :; do echo y; done | head -1`. The interpreter's
// pipelines are goroutines, where Go turns SIGPIPE into EPIPE (but on
// fds 1 and 2, where Go's runtime dies of it as bash does): such a loop
// ran for ever. EPIPE is taken here for the SIGPIPE bash would have died
// of, `exit 141` ending the (sub)shell as bash's, unless SIGPIPE is
// trapped or ignored, or echo is a function of the script (the caller's
// sigpipeKills); then bash's write error and status 1.
func writeBuiltin(ctx context.Context, args []string, sigpipeKills bool) []string {
	out, ok := builtinOutput(args)
	if !ok {
		return nil
	}
	if out == "" {
		return []string{":"}
	}
	hc := interp.HandlerCtx(ctx)
	if _, err := io.WriteString(hc.Stdout, out); err != nil {
		if errors.Is(err, unix.EPIPE) && sigpipeKills {
			return []string{"exit", strconv.Itoa(128 + int(unix.SIGPIPE))}
		}
		why := err.Error()
		var errno unix.Errno
		if errors.As(err, &errno) {
			why = errno.Error()
		}
		fmt.Fprintf(hc.Stderr, "%s: write error: %s\n", args[0], strings.ToUpper(why[:1])+why[1:])
		return []string{"false"}
	}
	return []string{":"}
}

// builtinOutput is what the interpreter's echo or printf writes for args;
// ok is false for a printf the interpreter refuses.
func builtinOutput(args []string) (out string, ok bool) {
	var b strings.Builder
	rest := args[1:]
	if args[0] == "echo" {
		newline, doExpand := true, false
		// Options as bash takes them: -n, -e, -E, alone or together.
		for len(rest) > 0 && len(rest[0]) > 1 && rest[0][0] == '-' && strings.Trim(rest[0][1:], "neE") == "" {
			for _, c := range rest[0][1:] {
				switch c {
				case 'n':
					newline = false
				case 'e':
					doExpand = true
				case 'E':
					doExpand = false
				}
			}
			rest = rest[1:]
		}
		for i, arg := range rest {
			if i > 0 {
				b.WriteString(" ")
			}
			if doExpand {
				arg, _, _ = expand.Format(nil, arg, nil)
			}
			b.WriteString(arg)
		}
		if newline {
			b.WriteString("\n")
		}
		return b.String(), true
	}
	if len(rest) > 0 && rest[0] == "--" {
		rest = rest[1:] // bash's end of options
	}
	if len(rest) == 0 {
		return "", false
	}
	format, fargs := rest[0], rest[1:]
	for {
		s, n, err := expand.Format(nil, format, fargs)
		if err != nil {
			return "", false
		}
		b.WriteString(s)
		fargs = fargs[n:]
		if n == 0 || len(fargs) == 0 {
			return b.String(), true
		}
	}
}

// readCommand reads a stage's command from path, which must hold length
// bytes.
func readCommand(path, length string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read the command: %w", err)
	}
	if strconv.Itoa(len(b)) != length {
		return "", fmt.Errorf("read the command: %d bytes in %s, want %s", len(b), path, length)
	}
	return string(b), nil
}

// stageBuiltins hands the builtins the interpreter knows by name but does
// not implement (or only in part) to what does them: trap and ulimit to
// the stage shell's own (shellbuiltins.go), through the exec handler;
// kill to the program of that name, as a shell without that builtin would
// run it (`kill -TERM $$` works in a stage), or where PATH has no kill
// (procps is not everywhere) to ipcflow's own role "kill".
func stageBuiltins(ctx context.Context, args []string, traps *shellTraps) ([]string, error) {
	if args[0] == "builtin" && len(args) > 1 && (args[1] == "trap" || args[1] == "ulimit") {
		args = args[1:]
	}
	switch args[0] {
	case "trap":
		args[0] = trapBuiltin
		return args, nil
	case "ulimit":
		args[0] = ulimitBuiltin
		return args, nil
	case "kill":
		if sig, pids, ok := parseKill(args[1:]); ok && len(pids) == 1 && pids[0] == strconv.Itoa(os.Getpid()) &&
			(traps.trapped(sig) || endsTheShell(sig) || killsTheShell(sig) || sig == unix.SIGQUIT) {
			return []string{raiseBuiltin, strconv.Itoa(int(sig))}, nil
		}
	default:
		return args, nil
	}
	hc := interp.HandlerCtx(ctx)
	if path, err := interp.LookPathDir(hc.Dir, hc.Env, args[0]); err == nil {
		args[0] = path
		return args, nil
	}
	path, argv, err := internalCommand("kill", args[1:]...)
	if err != nil {
		return args, nil
	}
	argv[0] = path
	return argv, nil
}

// killsTheShell: TERM, INT, HUP and PIPE end the stage shell by Go's
// runtime's own handler, but a kill(1) of our own pid lets the shell run
// on meanwhile: its next command, or its exit with status 0 when the
// signal's thread is slow to run on a busy machine. bash's kill builtin
// dies at once; so does `kill -SIG $$` here (raise).
func killsTheShell(sig unix.Signal) bool {
	return sig == unix.SIGTERM || sig == unix.SIGINT || sig == unix.SIGHUP || sig == unix.SIGPIPE
}

// killRole is kill(1) for stages on systems without it:
// kill [-s SIG | -SIG] [--] PID... (a negative PID is a process group).
func killRole(args []string) int {
	sig, args, ok := parseKill(args)
	if !ok {
		fmt.Fprintf(os.Stderr, "kill: %s: invalid signal specification\n", args[0])
		return 1
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "kill: usage: kill [-s SIG | -SIG] PID...")
		return 2
	}
	status := 0
	for _, a := range args {
		pid, err := strconv.Atoi(a)
		if err == nil {
			err = unix.Kill(pid, sig)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "kill: (%s) - %v\n", a, err)
			status = 1
		}
	}
	return status
}

// parseKill parses kill's arguments: [-s SIG | -SIG] [--] PID...; on a
// bad signal it returns its name as the only argument, and false.
func parseKill(args []string) (unix.Signal, []string, bool) {
	sig := unix.SIGTERM
	if len(args) > 1 && args[0] == "-s" {
		args = append([]string{"-" + args[1]}, args[2:]...)
	}
	if len(args) > 0 && strings.HasPrefix(args[0], "-") && args[0] != "--" && len(args[0]) > 1 {
		name := strings.TrimPrefix(strings.ToUpper(args[0][1:]), "SIG")
		if n, err := strconv.Atoi(name); err == nil {
			sig = unix.Signal(n)
		} else if s := unix.SignalNum("SIG" + name); s != 0 {
			sig = s
		} else {
			return 0, []string{args[0][1:]}, false
		}
		args = args[1:]
	}
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	return sig, args, true
}

// stageExec runs one program for the stage shell: the real fds go to it
// directly (os/exec passes an *os.File as is; anything else the
// interpreter hands us, such as a pipe within the command, is an *os.File
// too), and a program that can't be found gives 127 and a line that names
// the stage. A trapped signal that came while the program ran has its
// command run when the program ends, as bash does.
func stageExec(stage string, extra []*os.File, progs *isolate.Programs, traps *shellTraps, foregroundDone <-chan struct{}) interp.ExecHandlerFunc {
	return func(ctx context.Context, args []string) error {
		switch args[0] {
		case trapBuiltin:
			traps.awaitWatching() // so the runtime's handlers are settled first
			return traps.trap(ctx, args[1:])
		case ulimitBuiltin:
			return ulimit(ctx, args[1:])
		case raiseBuiltin:
			n, _ := strconv.Atoi(args[1])
			return traps.raise(ctx, unix.Signal(n))
		}
		traps.awaitWatching()
		if args[0] == detachedMarker {
			return runProgram(ctx, stage, extra, progs, args[1:], foregroundDone)
		}
		return traps.runPending(ctx, runProgram(ctx, stage, extra, progs, args, nil))
	}
}

// runProgram runs one program of the stage shell and returns its status.
// A program started in the background is let go of (its status is then
// 0) once letGo is closed: the stage does not wait for it. Under a pids
// limit (progs) the program is started in the stage's pids group, or
// through the internal role "limits" for RLIMIT_NPROC; a fork the limit
// refuses ends the shell with one line and status 2, as dash's "Cannot
// fork" does.
func runProgram(ctx context.Context, stage string, extra []*os.File, progs *isolate.Programs, args []string, letGo <-chan struct{}) error {
	hc := interp.HandlerCtx(ctx)
	path, err := interp.LookPathDir(hc.Dir, hc.Env, args[0])
	if err != nil {
		code, msg := cannotRun(hc.Dir, args[0], nil)
		fmt.Fprintf(hc.Stderr, "ipcflow: stage %s: %s: %s\n", stage, args[0], msg)
		return interp.ExitStatus(code)
	}
	command := func(path string, argv []string) *osexec.Cmd {
		path, argv = limitedArgv(progs.RoleArgs(), path, argv)
		return &osexec.Cmd{
			Path:       path,
			Args:       argv,
			Env:        execEnv(hc.Env),
			Dir:        hc.Dir,
			Stdin:      hc.Stdin,
			Stdout:     hc.Stdout,
			Stderr:     hc.Stderr,
			ExtraFiles: extra,
		}
	}
	cmd := command(path, args)
	err = progs.Start(cmd.Start)
	if errors.Is(err, unix.ENOEXEC) {
		// A script without a #! line: run it with a shell of its
		// own, as shells do (the interpreter's default does that).
		if progs == nil {
			return interp.DefaultExecHandler(2*time.Second)(ctx, args)
		}
		cmd = command("/bin/sh", append([]string{"sh", path}, args[1:]...))
		err = progs.Start(cmd.Start)
	}
	if err != nil {
		if progs.Max() > 0 && errors.Is(err, unix.EAGAIN) {
			fmt.Fprintf(hc.Stderr, "ipcflow: stage %s: %s: cannot fork: the stage's limit pids=%d is reached\n", stage, args[0], progs.Max())
			os.Exit(2)
		}
		code, msg := cannotRun(hc.Dir, path, err)
		fmt.Fprintf(hc.Stderr, "ipcflow: stage %s: %s: %s\n", stage, args[0], msg)
		return interp.ExitStatus(uint8(code))
	}
	if letGo != nil {
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		select {
		case err = <-waited:
		case <-letGo:
			return nil
		}
	} else {
		err = cmd.Wait()
	}
	var ee *osexec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return interp.ExitStatus(128 + uint8(ws.Signal()))
		}
		return interp.ExitStatus(uint8(ee.ExitCode()))
	}
	return err
}

// execEnv lists the exported variables of env as NAME=VALUE.
func execEnv(env expand.Environ) []string {
	var list []string
	for name, vr := range env.Each {
		if vr.Exported && vr.IsSet() {
			list = append(list, name+"="+vr.String())
		}
	}
	return list
}

// dieOf ends the process by sig, as its default action would: Go's
// runtime catches SIGPIPE, USR1 and others and ignores one sent by
// kill(2), or dumps goroutines for SEGV, so the default action is restored
// first with a raw rt_sigaction, and the signal unblocked and raised on
// this thread.
func dieOf(sig unix.Signal) {
	os.Stdout.Sync()
	var act struct {
		handler  uintptr
		flags    uint64
		restorer uintptr
		mask     uint64
	} // SIG_DFL, no flags, empty mask
	unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&act)), 0, 8, 0, 0)
	var set [1]uint64
	set[0] = 1 << (uint(sig) - 1)
	unix.RawSyscall6(unix.SYS_RT_SIGPROCMASK, unix.SIG_UNBLOCK, uintptr(unsafe.Pointer(&set)), 0, 8, 0, 0)
	unix.Tgkill(unix.Getpid(), unix.Gettid(), sig)
	// Not reached unless the signal could not be delivered.
	os.Exit(128 + int(sig))
}

// The stage ends when its foreground command and the shell code it
// runs in the background have ended; a program it started in the
// background is not waited for, as `bash -c` does not wait for it (it
// lives on in the stage's group until the run ends). Background shell
// code (`{ sleep 1; echo late; } &`, a loop, `>(cmd)`) is a goroutine of
// the interpreter, not bash's orphan process, and would die with the
// stage shell: it is waited for.
//
// markDetached marks each background statement that is one simple
// command whose name is not a function of the script: the exec handler
// runs it as a program that can be let go of.
// withWait then runs the command as
//
//	{ COMMAND
//	}; __ipcflow_status=$?; __ipcflow_foreground_done; wait; exit $__ipcflow_status
//
// keeping the command's status, and running an EXIT trap once, after the
// wait. __ipcflow_foreground_done lets the marked programs go.
// scriptFuncs names the functions f declares: a call of one of those
// names is the function, not a program or a builtin.
func scriptFuncs(f *syntax.File) map[string]bool {
	funcs := map[string]bool{}
	syntax.Walk(f, func(n syntax.Node) bool {
		if fd, ok := n.(*syntax.FuncDecl); ok && fd.Name != nil {
			funcs[fd.Name.Value] = true
		}
		return true
	})
	return funcs
}

const (
	detachedMarker     = "\x00detached"
	foregroundDoneName = "__ipcflow_foreground_done"
)

func markDetached(f *syntax.File) *syntax.File {
	funcs := scriptFuncs(f)
	syntax.Walk(f, func(n syntax.Node) bool {
		st, ok := n.(*syntax.Stmt)
		if !ok || !st.Background {
			return true
		}
		if call, ok := st.Cmd.(*syntax.CallExpr); ok && len(call.Args) > 0 && !funcs[call.Args[0].Lit()] {
			marker := &syntax.Word{Parts: []syntax.WordPart{&syntax.Lit{Value: detachedMarker}}}
			call.Args = append([]*syntax.Word{marker}, call.Args...)
		}
		return true
	})
	return f
}

func withWait(f *syntax.File) *syntax.File {
	tail, err := syntax.NewParser().Parse(strings.NewReader("__ipcflow_status=$?; "+foregroundDoneName+"; wait; exit $__ipcflow_status"), "")
	if err != nil {
		panic("stage shell: " + err.Error()) // a constant that parses
	}
	block := &syntax.Stmt{Cmd: &syntax.Block{Stmts: f.Stmts, Last: f.Last}}
	return &syntax.File{Name: f.Name, Stmts: append([]*syntax.Stmt{block}, tail.Stmts...)}
}
