// Command ipcflow runs .ipcflow scripts: graphs of Unix processes joined by
// typed edges (pipes, FIFOs, message queues, shared memory, mapped files,
// sockets). See README.md and docs/.
//
// main stays trivial: Main takes its arguments and streams and returns the
// exit status, so tests (testscript) call it directly. Each command is a
// struct with a Run method in a file of its own.
package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/ipcflow/ipcflow/diag"
	"github.com/ipcflow/ipcflow/exec"
	"github.com/ipcflow/ipcflow/parser"
)

func main() {
	// A stage's shell and the run's guardian are this same binary started
	// again with a marker argument; they never reach the command line.
	if code, ok := exec.RunInternal(os.Args); ok {
		os.Exit(code)
	}
	if printsInfo(os.Args[1:]) {
		// Help and version are for people and for `| head`: a reader
		// that went away is no failure. Catching SIGPIPE (not ignoring
		// it: an ignored signal stays ignored in what ipcflow starts)
		// turns the write's death into an EPIPE that is not reported.
		signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	}
	os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// printsInfo reports whether the command line only asks for help or the
// version.
func printsInfo(args []string) bool {
	if len(args) > 0 && (args[0] == "help" || args[0] == "version") {
		return true
	}
	return slices.Contains(args, "--help") || slices.Contains(args, "-h") || slices.Contains(args, "--version")
}

// CLI is the whole command line.
type CLI struct {
	Run        RunCmd        `cmd:"" help:"Run a flow."`
	Check      CheckCmd      `cmd:"" help:"Parse and check scripts; report every error as FILE:LINE:COL: message."`
	Fmt        FmtCmd        `cmd:"" help:"Print scripts in canonical layout (comments kept)."`
	Graph      GraphCmd      `cmd:"" help:"Print a flow's graph as Graphviz dot or Mermaid."`
	Clean      CleanCmd      `cmd:"" help:"Remove kernel objects and files left by crashed runs."`
	Bench      BenchCmd      `cmd:"" help:"Measure throughput and latency of each edge type on this machine."`
	Lock       LockCmd       `cmd:"" help:"Inside a stage: run COMMAND holding one unit of semaphore SEM."`
	Version    VersionCmd    `cmd:"" help:"Print ipcflow's version."`
	Watch      WatchCmd      `cmd:"" help:"Run a flow, and again whenever its file or a PATH changes."`
	Ps         PsCmd         `cmd:"" help:"The user's live runs; with RUN (its id, a prefix of it, or ipcflow's pid), its stages and edges once: what each does and waits on."`
	Help       HelpCmd       `cmd:"" help:"Show help for ipcflow or for COMMAND (the same as --help)."`
	Completion CompletionCmd `cmd:"" help:"Print a completion script for bash, zsh or fish."`
	Man        ManCmd        `cmd:"" help:"Print ipcflow's man page (roff): man -l <(ipcflow man)."`

	VersionFlag versionFlag `name:"version" env:"-" help:"Print ipcflow's version and exit."`
	Color       string      `enum:"auto,always,never" default:"auto" help:"Script errors with their source line and a caret: auto (on a terminal, in colour unless NO_COLOR is set), always (and in colour), never (no colour)."`
}

// versionFlag is --version. -v is left free: most commands that have it
// mean --verbose. No IPCFLOW_VERSION variable: one left in the
// environment would turn every command into a version print.
type versionFlag = kong.VersionFlag

// HelpCmd is `ipcflow help [COMMAND...]`, which Main turns into
// `ipcflow [COMMAND...] --help` before kong sees it (as git and go users
// expect): declared here to be listed with the commands.
type HelpCmd struct {
	Command []string `arg:"" optional:"" completion-predictor:"command" help:"The command to show help for."`
}

// shortUsage is what `ipcflow` alone prints, on stderr, with status 2.
const shortUsage = `Usage: ipcflow <command> [flags]
       ipcflow FILE [NAME=VALUE...]    (ipcflow run FILE ..., for #! lines)
Run 'ipcflow --help' for the commands, 'ipcflow help COMMAND' for one.`

// runCLI is the command line of `ipcflow run` alone. A run (every #! script)
// builds kong's model of its own command only: the whole CLI's costs three
// times as much (0.5 ms against 0.16 ms warm, more cold), on the path of
// every start. Its help and errors are the same as under CLI.
type runCLI struct {
	Run         RunCmd      `cmd:"" help:"Run a flow."`
	VersionFlag versionFlag `name:"version" env:"-" help:"Print ipcflow's version and exit."`
	Color       string      `enum:"auto,always,never" default:"auto" help:"Script errors with their source line and a caret: auto (on a terminal, in colour unless NO_COLOR is set), always (and in colour), never (no colour)."`
}

// Streams are the standard streams a command uses; tests pass their own.
type Streams struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Color  diag.Mode // --color: how script errors are shown on Stderr
}

// scriptErrors is the stream for a script's errors: Stderr, with a caret
// under each error's column on a terminal (diag). Only script errors go
// through it: Stderr itself is handed to child processes as it is.
func (s *Streams) scriptErrors() io.Writer {
	return &diag.Writer{W: s.Stderr, Mode: s.Color}
}

// ExitStatus is an error that carries the exit status of ipcflow. Its
// message (if not empty) is printed as "ipcflow: MESSAGE" on stderr; an empty
// message means the command already said what went wrong.
type ExitStatus struct {
	Code int
	Msg  string
}

func (e *ExitStatus) Error() string { return e.Msg }

// Exit status for usage and check errors (SPEC 6): kong's default is 80.
const usageStatus = 2

// Main runs ipcflow with args (without the program name) and returns the
// process's exit status.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if line, whole, ok := completionRequest(args); ok {
		return completeLine(line, whole, stdout, stderr)
	}
	if len(args) == 0 {
		fmt.Fprintln(stderr, shortUsage)
		return usageStatus
	}
	if args[0] == "help" {
		args = append(slices.Clone(args[1:]), "--help")
	}
	args, err := routeFile(args)
	if err != nil {
		exec.PrintMessage(stderr, err.Error())
		return usageStatus
	}
	streams := &Streams{Stdin: stdin, Stdout: stdout, Stderr: stderr}
	if c, ok := quickRun(args); ok {
		return exitStatus(stderr, c.run(streams, runFlagEnvs))
	}
	var cli any = &CLI{}
	if len(args) > 0 && args[0] == "run" {
		cli = &runCLI{}
	}
	exited := -1
	k, err := newKong(cli, stdout, stderr, func(code int) { exited = code })
	if err != nil {
		fmt.Fprintf(stderr, "ipcflow: %v\n", err)
		return 70
	}
	ctx, err := k.Parse(args)
	if exited >= 0 { // --help or --version printed and asked to exit
		if exited != 0 {
			return usageStatus
		}
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "ipcflow: %v\n", err)
		return usageStatus
	}
	switch c := cli.(type) {
	case *CLI:
		streams.Color = diag.Mode(c.Color)
	case *runCLI:
		streams.Color = diag.Mode(c.Color)
	}
	return exitStatus(stderr, ctx.Run(streams))
}

// description is the top of `ipcflow --help` and of the man page.
const description = "Wire Unix processes into graphs: run .ipcflow scripts.\n\n'ipcflow FILE [NAME=VALUE...]' is 'ipcflow run FILE [NAME=VALUE...]', for #! lines."

// newKong is the command-line parser for cli (a *CLI or a *runCLI): help
// and the version on stdout, errors on stderr, exit through exit. The
// command line, completion and the man page share it.
func newKong(cli any, stdout, stderr io.Writer, exit func(int)) (*kong.Kong, error) {
	return kong.New(cli,
		kong.Name("ipcflow"),
		kong.Description(description),
		kong.Writers(infoWriter{stdout}, stderr),
		kong.Exit(exit),
		kong.UsageOnError(),
		kong.DefaultEnvars("IPCFLOW"),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Vars{"version": version()},
	)
}

// exitStatus turns a command's error into ipcflow's exit status, printing
// its message.
func exitStatus(stderr io.Writer, err error) int {
	if err == nil {
		return 0
	}
	var es *ExitStatus
	if errors.As(err, &es) {
		if es.Msg != "" {
			exec.PrintMessage(stderr, es.Msg)
		}
		return es.Code
	}
	exec.PrintMessage(stderr, err.Error())
	return 1
}

// infoWriter is kong's stdout, which carries only help and the version:
// a reader that has gone (`ipcflow --help | head -1`) or a closed stdout
// is not an error for them, so write errors are dropped.
type infoWriter struct{ w io.Writer }

func (i infoWriter) Write(p []byte) (int, error) {
	i.w.Write(p)
	return len(p), nil
}

// commands are the command names of the command line.
var commands = []string{"run", "check", "fmt", "graph", "clean", "bench", "lock", "version", "watch", "ps", "completion", "man", "help"}

// routeFile turns `ipcflow FILE ARGS...` into `ipcflow run FILE ARGS...`, so
// that `#!/usr/bin/env ipcflow` works: the kernel runs `ipcflow ./script`.
// The first argument is taken as a file when it is not a command name nor a
// flag. A word that is neither a command nor a file, and does not look like
// a path (no / and no .), is most likely a mistyped command: that is the
// error, not "no such file".
func routeFile(args []string) ([]string, error) {
	if len(args) > 0 && args[0] == stdinArg { // ipcflow - is ipcflow run -
		return append([]string{"run"}, args...), nil
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") || slices.Contains(commands, args[0]) {
		return args, nil
	}
	name := args[0]
	if _, err := os.Stat(name); errors.Is(err, fs.ErrNotExist) && !strings.ContainsAny(name, "/.") {
		if near := parser.Closest(name, commands); near != "" {
			return nil, fmt.Errorf("%s is neither a command nor a file (did you mean %q?)", name, near)
		}
		return nil, fmt.Errorf("%s is neither a command nor a file; the commands are %s (ipcflow --help)", name, strings.Join(commands[:len(commands)-1], ", "))
	}
	return append([]string{"run"}, args...), nil
}
