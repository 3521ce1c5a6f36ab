package main

import (
	"os"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"github.com/ipcflow/ipcflow/exec"
	"github.com/ipcflow/ipcflow/parser"
)

// RunCmd runs a flow (SPEC 6, 7). Every flag is also an IPCFLOW_* variable
// (IPCFLOW_GRACE=1s), for `#!/usr/bin/env ipcflow` scripts.
type RunCmd struct {
	File      string        `arg:"" completion-predictor:"script" help:"The .ipcflow script (- for standard input: the stages' stdin is then /dev/null)."`
	Params    []string      `arg:"" optional:"" completion-predictor:"params" help:"NAME=VALUE: set a param declared in the script."`
	DryRun    bool          `help:"Print the plan (objects, processes, the fds of each) and start nothing."`
	Label     bool          `help:"Prefix each line a stage writes to stderr with its name."`
	KeepGoing bool          `help:"When a stage fails, let the others finish (the exit status is still the first failure's)."`
	Grace     time.Duration `default:"5s" help:"Time between SIGTERM and SIGKILL when the flow is stopped."`
	Timeout   time.Duration `help:"Stop the flow after this long and exit 124 (0: no limit)."`

	Stats     bool   `help:"After the run, a table on stderr: per stage status, CPU, memory, I/O and where its time went; per edge bytes, records, throughput and fill; the bottleneck."`
	StatsJSON string `name:"stats-json" placeholder:"FILE" completion-predictor:"path" help:"The --stats figures as one JSON document in FILE (- for stdout; schema in docs/stats.md)."`
	Monitor   bool   `help:"A live view of stages and edges on stderr while the flow runs (on a terminal; else the same as --stats), then the --stats table."`
}

func (c *RunCmd) Run(s *Streams, kctx *kong.Context) error {
	return c.run(s, flagEnvs(kctx))
}

// run runs the flow; flagEnv names the IPCFLOW_* variables of run's flags,
// which stages do not inherit.
func (c *RunCmd) run(s *Streams, flagEnv []string) error {
	if c.Grace < 0 || c.Timeout < 0 {
		return &ExitStatus{Code: usageStatus, Msg: "run: --grace and --timeout take a duration of 0 or more"}
	}
	g, err := c.load(s)
	if err != nil {
		return err
	}
	grace := c.Grace
	if grace <= 0 {
		grace = time.Nanosecond // --grace=0: SIGKILL right after SIGTERM
	}
	m, err := c.measuring(s)
	if err != nil {
		return err
	}
	code := exec.Run(g, exec.Options{
		Overrides: c.Params,
		DryRun:    c.DryRun,
		Label:     c.Label,
		KeepGoing: c.KeepGoing,
		Grace:     grace,
		Timeout:   c.Timeout,
		Stdout:    s.Stdout,
		Stderr:    s.Stderr,
		FlagEnv:   flagEnv,
		Measure:   m.on(),
		Started:   m.started,
		Report:    m.report,
		Suspend:   m.suspend,
		Resume:    m.resume,
	})
	m.abandon(c.StatsJSON)
	if code == 0 && m.failed {
		code = 1 // the flow ran, but its figures could not be written
	}
	if code != 0 {
		return &ExitStatus{Code: code}
	}
	return nil
}

// load reads and checks the script, from standard input for a File of -.
// Such a script has been read to the end of stdin, so no stage is handed
// ipcflow's stdin: an unconnected `in` is /dev/null as always, and a
// `stdin ->` edge is refused rather than left to read nothing.
func (c *RunCmd) load(s *Streams) (*parser.Graph, error) {
	if c.File != stdinArg {
		if g := exec.Load(s.scriptErrors(), c.File, c.Params); g != nil {
			return g, nil
		}
		return nil, &ExitStatus{Code: usageStatus}
	}
	src, err := readStdinScript(s)
	if err != nil {
		return nil, err
	}
	g := exec.LoadSource(s.scriptErrors(), parser.StdinName, src, c.Params)
	if g == nil {
		return nil, &ExitStatus{Code: usageStatus}
	}
	if errs := stdinEdges(g); len(errs) > 0 {
		exec.PrintParseError(s.scriptErrors(), errs)
		return nil, &ExitStatus{Code: usageStatus}
	}
	return g, nil
}

// flagEnvs lists the IPCFLOW_* variables of the selected command's flags,
// from kong's own model, so the list kept from stages can't drift from the
// flags.
func flagEnvs(kctx *kong.Context) []string {
	var names []string
	for _, f := range kctx.Selected().Flags {
		names = append(names, f.Envs...)
	}
	return names
}

// runFlagEnvs are the IPCFLOW_* variables of run's flags, as kong names
// them (DefaultEnvars: the flag's name upper-cased, - as _).
// TestQuickRunMatchesKong holds the list to kong's own.
var runFlagEnvs = []string{"IPCFLOW_DRY_RUN", "IPCFLOW_LABEL", "IPCFLOW_KEEP_GOING", "IPCFLOW_GRACE",
	"IPCFLOW_TIMEOUT", "IPCFLOW_STATS", "IPCFLOW_STATS_JSON", "IPCFLOW_MONITOR"}

// quickRun is `ipcflow run FILE [NAME=VALUE...]` with no flag but the
// measuring ones (--stats, --monitor, --stats-json FILE), on the command
// line and none in the environment: what every #! script and most runs
// are. It is run without kong, whose model of even run's command alone
// costs 0.3 to 0.5 ms of every start here (docs/exec.md, "Speed"), more
// than --stats itself may cost (docs/stats.md); anything else, help and
// every error included, goes through kong. ok is false when args are not
// such a run.
func quickRun(args []string) (c *RunCmd, ok bool) {
	if len(args) < 2 || args[0] != "run" {
		return nil, false
	}
	c = &RunCmd{Grace: exec.DefaultGrace}
	var rest []string
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--stats":
			c.Stats = true
		case a == "--monitor":
			c.Monitor = true
		case a == "--stats-json" && i+1 < len(args):
			i++
			c.StatsJSON = args[i]
		case strings.HasPrefix(a, "--stats-json=") && len(a) > len("--stats-json="):
			c.StatsJSON = strings.TrimPrefix(a, "--stats-json=")
		case strings.HasPrefix(a, "-") && a != stdinArg:
			return nil, false
		default:
			rest = append(rest, a)
		}
	}
	if len(rest) == 0 {
		return nil, false
	}
	for _, e := range runFlagEnvs {
		if _, set := os.LookupEnv(e); set {
			return nil, false
		}
	}
	if _, set := os.LookupEnv("IPCFLOW_COLOR"); set { // --color, a flag of every command
		return nil, false
	}
	c.File, c.Params = rest[0], rest[1:]
	return c, true
}
