package exec

import (
	"fmt"
	"github.com/ipcflow/ipcflow/isolate"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/term"
	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"

	"github.com/ipcflow/ipcflow/bridge"
	"github.com/ipcflow/ipcflow/budget"
	"github.com/ipcflow/ipcflow/channels"
	"github.com/ipcflow/ipcflow/contain"
	"github.com/ipcflow/ipcflow/parser"
)

// Plan is everything a run will create and start, decided before anything
// is: --dry-run prints it, Run carries it out.
type Plan struct {
	Graph  *parser.Graph
	Params []Var // expanded, in file order
	Envs   []Var // expanded, in file order
	Wires  []*Wire
	Movers []*MoverPlan
	Stages []*StagePlan
	Label  bool
	// Environ is ipcflow's environment as the run sees it (its own flag
	// variables left out): params expand against it, stages inherit it.
	Environ []string

	// Warnings are the plan's own (a pipe budget shared thin), printed
	// by --dry-run and before a run starts.
	Warnings []string

	stdinTTY bool // ipcflow's stdin is a terminal: stages can't read it themselves

	// contain is where the run's cgroup will be made (contain.go), when
	// containOK: decided here, so --dry-run says what the run gets.
	contain   contain.Place
	containOK bool

	nativeErrs []string // native ports the plan cannot give (native.go)
}

// Var is one expanded NAME=VALUE.
type Var struct{ Name, Value string }

// Wire is one fd-carrying object: an edge's channel (several edges for a
// fan-out group over a type that serves many readers), or a pipe of
// ipcflow's own in front of a tee, behind a join or under a --label copier.
type Wire struct {
	ID      string         // "e3" (edge 3 of the file) or "p2" (internal pipe)
	Edges   []*parser.Edge // nil for an internal pipe
	Spec    channels.Spec  // Type "pipe" and ID "pN" for internal pipes
	Purpose string         // what it is for, in words, for --dry-run
}

// atEdge says err happened making w, at its first edge's place in the
// script (FILE:LINE:COL: edge a.out -> b.in: ...), as the checks do: the
// wire's id (e3) is a name the user never wrote.
func (w *Wire) atEdge(file string, err error) error {
	if w.Internal() {
		return err
	}
	e := w.Edges[0]
	msg := strings.TrimPrefix(err.Error(), "edge "+w.ID+": ")
	return fmt.Errorf("%s:%s: edge %s -> %s: %s", file, e.Pos, e.From, e.To, msg)
}

// Internal reports whether w is a pipe of ipcflow's own rather than an edge.
func (w *Wire) Internal() bool { return w.Edges == nil }

// EndKind says what an End is.
type EndKind int

const (
	EndNull  EndKind = iota // /dev/null
	EndOwn                  // one of ipcflow's own fds 0, 1, 2
	EndWrite                // a wire's writer
	EndRead                 // a wire's reader Index
	// EndNative is part Fd (channels.NativeObject, NativeControl,
	// NativeLife) of a native stage's end of a wire: the writer when
	// Index is channels.WriterEnd, else reader Index (native.go).
	EndNative
)

// End is one fd as a stage or a mover sees it.
type End struct {
	Kind  EndKind
	Fd    int // EndOwn: 0, 1 or 2
	Wire  int // EndWrite, EndRead: index into Plan.Wires
	Index int // EndRead: which reader
}

func nullEnd() End              { return End{Kind: EndNull} }
func ownEnd(fd int) End         { return End{Kind: EndOwn, Fd: fd} }
func writeEnd(w int) End        { return End{Kind: EndWrite, Wire: w} }
func readEnd(w, i int) End      { return End{Kind: EndRead, Wire: w, Index: i} }
func (e End) isOwn(fd int) bool { return e.Kind == EndOwn && e.Fd == fd }

// describe names the end for --dry-run.
func (e End) describe(p *Plan) string {
	switch e.Kind {
	case EndNull:
		return "/dev/null"
	case EndOwn:
		return [...]string{"ipcflow's stdin", "ipcflow's stdout", "ipcflow's stderr"}[e.Fd]
	case EndWrite:
		return p.Wires[e.Wire].ID + " (write)"
	case EndNative:
		return describeNative(p, e)
	default:
		if p.Wires[e.Wire].Spec.Readers > 1 {
			return fmt.Sprintf("%s (read %d)", p.Wires[e.Wire].ID, e.Index)
		}
		return p.Wires[e.Wire].ID + " (read)"
	}
}

// MoverKind says what a mover does.
type MoverKind int

const (
	Tee   MoverKind = iota // one source to every destination (fan-out)
	Join                   // every source in turn to one destination (fan-in)
	Label                  // a stage's stderr to ipcflow's, lines prefixed
)

// MoverPlan is a data mover running inside ipcflow.
type MoverPlan struct {
	Kind    MoverKind
	Srcs    []End
	Dsts    []End
	Stage   string // Label: the stage whose lines it prefixes
	Purpose string
	// ReadAhead (Tee): read the source to its end even while no
	// destination takes bytes, for consumers that start only after their
	// producer has exited (movers.StartTeeAhead).
	ReadAhead bool
}

// readsStdin reports whether m reads ipcflow's own stdin: such a mover may
// block on a terminal forever, so the end of a run does not wait for it.
func (m *MoverPlan) readsStdin() bool {
	for _, s := range m.Srcs {
		if s.isOwn(0) {
			return true
		}
	}
	return false
}

// writesOwn reports whether m writes into ipcflow's own stdout or stderr:
// then what it moves is the flow's output, and the run waits for it.
func (m *MoverPlan) writesOwn() bool {
	for _, d := range m.Dsts {
		if d.Kind == EndOwn {
			return true
		}
	}
	return false
}

// StagePlan is one stage's process as planned: its fd table and names. The
// rest of what it sees (environment, argv or shell) is built by
// (*Plan).Process, which both --dry-run and the real start call.
type StagePlan struct {
	Stage *parser.Stage
	Fds   []End      // index = fd number in the stage's process
	Ports []PortSlot // declared ports, fd 3 on
	// Natives are a native stage's ports that it holds itself (its mq,
	// shm and mmap ports), in port order: described to it in
	// IPCFLOW_PORT_<PORT>, their descriptors after the declared ports.
	Natives []NativePort
	// Copies is how many copies of the command run (SPEC 11): 1 for a
	// stage without replicas; N resolved ($PARAM, auto) by planReplicas.
	Copies int
	// WorkQueue: an unordered replicated stage whose in is one mq edge,
	// held by its replica runner as a native stage holds a port: the
	// copies take their work from the queue, each message to one.
	WorkQueue bool
	// Limits say how each of the stage's limits is enforced (limit.go).
	Limits []isolate.Mechanism
}

// PortSlot is a declared port's fd in the stage.
type PortSlot struct {
	Name string
	Fd   int
	// Native: the port is one of Natives; its fd is /dev/null and the
	// command has no variable for it, but IPCFLOW_PORT_<NAME>.
	Native bool
}

// UsageError is a mistake on the command line or a feature `run` does not
// support: ipcflow exits 2 before anything is created. One that points
// into the script (Positioned) prints as FILE:LINE:COL: message, as check
// errors do, so that editors can jump to it.
type UsageError struct {
	Msg        string
	Positioned bool
}

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// BuildPlan decides everything a run of g will create and start. overrides
// are the command line's NAME=VALUE words; environ is ipcflow's own
// environment, against which params are expanded.
func BuildPlan(g *parser.Graph, overrides []string, environ []string, label bool) (*Plan, error) {
	return buildPlan(g, overrides, environ, label, term.IsTerminal(0))
}

// buildPlan is BuildPlan with the one fact it takes from the machine,
// whether stdin is a terminal, given.
func buildPlan(g *parser.Graph, overrides []string, environ []string, label, stdinTTY bool) (*Plan, error) {
	for _, st := range g.Stages {
		if st.Native && (st.Replicas != 1 || st.ReplicasText != "") {
			return nil, usagef("stage %s: a native stage cannot have replicas (its ports are its own)", st.Name)
		}
	}
	for _, e := range g.Edges {
		if _, ok := channels.Lookup(string(e.Type)); !ok {
			return nil, &UsageError{Msg: fmt.Sprintf("%s:%s: edge type %s is not available in this build (have: %s)",
				g.File, e.Pos, e.Type, strings.Join(channels.Names(), ", ")), Positioned: true}
		}
	}
	environ = withScriptDir(environ, g.File)
	p := &Plan{Graph: g, Label: label, Environ: environ, stdinTTY: stdinTTY}
	p.contain, p.containOK = contain.Find()
	if err := p.expandVars(overrides, environ); err != nil {
		return nil, err
	}
	p.wire()
	if err := p.nativeError(); err != nil {
		return nil, err
	}
	if err := p.planReplicas(); err != nil {
		return nil, err
	}
	if err := p.planLimits(); err != nil {
		return nil, err
	}
	// Options this machine can't honour (a pipe above pipe-max-size, an mq
	// above its sysctl) are the user's to fix: say so, at the edge, before
	// anything is created, and before the queues are planned together.
	for _, w := range p.Wires {
		if w.Internal() {
			continue
		}
		if t, _ := channels.Lookup(w.Spec.Type); t.Check != nil {
			if err := t.Check(w.Spec.Options); err != nil {
				e := w.Edges[0]
				return nil, &UsageError{Msg: fmt.Sprintf("%s:%s: edge %s -> %s: %v", g.File, e.Pos, e.From, e.To, err), Positioned: true}
			}
		}
	}
	if err := p.planQueues(); err != nil {
		return nil, err
	}
	p.planPipeSizes()
	return p, nil
}

// stagePipeSize is the buffer of a pipe or fifo edge whose script sets no
// size: four times the kernel's default, so that the stages on each side
// read and write in larger steps and wake each other less. The 5-stage
// text pipeline over 256 MiB took 1.02 to 1.06 times bash's time with the
// default 64 KiB and 0.99 with 256 KiB (docs/exec.md, "Speed").
const stagePipeSize = 256 << 10

// planPipeSizes keeps a large flow inside the user's pipe budget: past
// /proc/sys/fs/pipe-user-pages-soft new pipes would silently shrink to
// 8 KiB. Pipe and fifo edges of unset size get stagePipeSize where the
// budget has room for all of them, else the kernel's default, and where
// it has not even that, what is left, shared, with a warning
// (Plan.Warnings). Planned here, not when the run starts, so that
// --dry-run shows the sizes the run will use.
func (p *Plan) planPipeSizes() {
	var unsized []*Wire
	var bridged int64 // bytes of the bridged edges' own pipes, two each
	for _, w := range p.Wires {
		if (w.Spec.Type == "pipe" || w.Spec.Type == "fifo") && w.Spec.Options.Size == 0 && !w.Internal() {
			unsized = append(unsized, w)
		}
		if t, ok := channels.Lookup(w.Spec.Type); ok && t.Caps.Bridged && !w.Internal() {
			bridged += 2 * bridge.PipeSize
		}
	}
	// The bridges' pipes count as so many more pipes of the size asked.
	fit := func(want int64) (int64, string) {
		return budget.PlanPipeSize(len(unsized)+int((bridged+want-1)/want), want)
	}
	if deep := p.hostWires(unsized); len(deep) > 0 {
		// All of them at once, or none: the deep ones count as so many
		// stagePipeSize pipes each.
		n := len(unsized) + len(deep)*int(remotePipeSize/stagePipeSize-1) + int((bridged+stagePipeSize-1)/stagePipeSize)
		if _, warn := budget.PlanPipeSize(n, stagePipeSize); warn == "" {
			for _, w := range unsized {
				w.Spec.Options.Size = stagePipeSize
			}
			for _, w := range deep {
				w.Spec.Options.Size = remotePipeSize
			}
			return
		}
	}
	size, warn := fit(stagePipeSize)
	if warn != "" {
		size, warn = fit(defaultPipeSize)
	}
	if warn != "" {
		p.Warnings = append(p.Warnings, warn)
	} else if size == defaultPipeSize {
		return // the kernel's own: nothing to set
	}
	for _, w := range unsized {
		w.Spec.Options.Size = size
	}
}

// remotePipeSize is the buffer of a pipe or fifo edge whose script sets no
// size and that a remote stage reads or writes (SPEC 13): on this host an
// ssh master moves its bytes, some 16 to 32 KiB per wake-up, between the
// pipe and its connection's packets; between two remote stages both ends
// are masters. A deeper pipe lets each run longer before it sleeps: a
// 256 MiB stream from h1 to h2 took 0.87 s with 1 MiB against 1.02 s with
// 256 KiB (docs/remote.md, "Figures").
const remotePipeSize = 1 << 20

// hostWires are the wires among ws that cross hosts: a stage on another
// host reads or writes them, and a stage elsewhere (here, or written on
// another host) has the other end. One whose ends are all on the host
// the script names alike stays there (exec/remote.go's hostPipe) and
// carries nothing here.
func (p *Plan) hostWires(ws []*Wire) []*Wire {
	var out []*Wire
	for _, w := range ws {
		hosts := map[string]bool{}
		remote := false
		for _, se := range p.stageEndsOn(slices.Index(p.Wires, w)) {
			if se.sp.Stage.Host != nil {
				remote = true
			}
			hosts[se.sp.Stage.HostText] = true // "" for a stage here
		}
		if remote && len(hosts) > 1 {
			out = append(out, w)
		}
	}
	return out
}

// stageEnd is a stage's fd that writes or reads a wire.
type stageEnd struct {
	sp  *StagePlan
	fd  int
	end End
}

// stageEndsOn lists the stages' fds that write or read wire w, in stage
// order.
func (p *Plan) stageEndsOn(w int) []stageEnd {
	var out []stageEnd
	for _, sp := range p.Stages {
		for fd, e := range sp.Fds {
			if (e.Kind == EndWrite || e.Kind == EndRead) && e.Wire == w {
				out = append(out, stageEnd{sp, fd, e})
			}
		}
	}
	return out
}

// defaultPipeSize is the kernel's default pipe buffer (16 pages).
const defaultPipeSize = 64 << 10

// expandVars expands every param and env word. Each word sees ipcflow's
// environment plus the params and envs written above it, so that
// `param OUT = $DIR/out` may build on `param DIR`.
func (p *Plan) expandVars(overrides []string, environ []string) error {
	given, err := p.Graph.CheckOverrides(overrides)
	if err != nil {
		return usagef("%v", err)
	}
	env := newParamEnv(environ)
	expandWord := func(what, name string, pos parser.Pos, w *syntax.Word) (string, error) {
		v, err := expandAssign(env, w)
		if err != nil {
			return "", &UsageError{Msg: fmt.Sprintf("%s:%s: %s %s: %v", p.Graph.File, pos, what, name, err), Positioned: true}
		}
		return v, nil
	}
	for _, pa := range p.Graph.Params {
		v, ok := given[pa.Name]
		if !ok {
			var err error
			if v, err = expandWord("param", pa.Name, pa.Pos, pa.Value); err != nil {
				return err
			}
		}
		p.Params = append(p.Params, Var{pa.Name, v})
		env.set(pa.Name, v)
	}
	for _, en := range p.Graph.Envs {
		v, err := expandWord("env", en.Name, en.Pos, en.Value)
		if err != nil {
			return err
		}
		p.Envs = append(p.Envs, Var{en.Name, v})
		env.set(en.Name, v)
	}
	return p.expandOptions(env)
}

// expandOptions expands the edge options whose values hold an expansion
// (path="$OUT/rec", size=$SZ) against what the params and envs saw, and
// checks them as the parser checks values written out (SPEC 4: before
// anything is created). Such an edge is replaced, in the plan's own copy
// of the graph, by one whose options are all values: the wiring, the
// objects and --dry-run see those.
func (p *Plan) expandOptions(env expand.Environ) error {
	g := *p.Graph
	g.Edges = slices.Clone(g.Edges)
	var errs parser.ErrorList
	expanded := false
	for i, e := range g.Edges {
		if len(e.Unexpanded) == 0 {
			continue
		}
		x := *e
		x.Unexpanded = nil
		for _, ow := range e.Unexpanded {
			v, err := expandAssign(env, ow.Word)
			if err == nil {
				err = x.Options.Set(e.Type, ow.Name, v)
			}
			if err != nil {
				errs = append(errs, &parser.Error{File: g.File, Pos: ow.Pos, Msg: fmt.Sprintf("option %s=%s: %v", ow.Name, ow.Text, err)})
			}
		}
		g.Edges[i], expanded = &x, true
	}
	if !expanded {
		return nil
	}
	errs = append(errs, parser.CheckPaths(&g)...)
	if len(errs) > 0 {
		errs.Sort() // a fan-out's edges share their options: one line each
		return &UsageError{Msg: errs.Error(), Positioned: true}
	}
	p.Graph = &g
	return nil
}

// scriptDirVar names the script's own directory, absolute (SPEC 2: given,
// usable in params and seen by every stage), so that a script finds its
// data wherever it is run from. It is the directory of the path the
// script was run by, symlinks not resolved (as bash's ${BASH_SOURCE%/*}),
// and it replaces any value inherited: a flow started from another flow's
// stage gets its own.
const scriptDirVar = "IPCFLOW_SCRIPT_DIR"

// withScriptDir is environ with IPCFLOW_SCRIPT_DIR set for the script at
// file ("" for a graph that came from no file: then it is left as is). A
// script read from standard input (parser.StdinName) has no directory of
// its own: the working directory stands for it, as it does for the
// relative paths in such a script.
func withScriptDir(environ []string, file string) []string {
	if file == "" || file == "-" {
		return environ
	}
	dir, err := filepath.Abs(filepath.Dir(file))
	if file == parser.StdinName {
		dir, err = os.Getwd()
	}
	if err != nil {
		return environ
	}
	env, _, _ := takeVar(environ, scriptDirVar)
	return append(env, scriptDirVar+"="+dir)
}

// takeVar is env without the variable name (every NAME=... of it) and
// its value: for the variables ipcflow hands its own processes, which are
// not passed on to what they start. rest is a new slice; env is kept.
func takeVar(env []string, name string) (rest []string, value string, found bool) {
	rest = make([]string, 0, len(env))
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			value, found = v, true
			continue
		}
		rest = append(rest, kv)
	}
	return rest, value, found
}

// EnvironWithout is ipcflow's environment less the variables named in
// hide: those of ipcflow's own flags (IPCFLOW_GRACE...), which mean
// something to ipcflow and would change a nested `ipcflow run` in a stage.
func EnvironWithout(hide []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(hide, name) {
			env = append(env, kv)
		}
	}
	return env
}

// planQueues sizes the flow's message queues together so that they fit the
// user's RLIMIT_MSGQUEUE (819,200 bytes by default: nine default-sized
// queues exhaust it), or fails, naming the limit, before anything starts.
func (p *Plan) planQueues() error {
	var mq []*Wire
	var queues []budget.Queue
	for _, w := range p.Wires {
		if !w.Internal() && w.Spec.Type == "mq" {
			mq = append(mq, w)
			queues = append(queues, w.Spec.Options.Queue())
		}
	}
	if len(mq) == 0 {
		return nil
	}
	planned, err := budget.PlanMQ(queues)
	if err != nil {
		return usagef("%s: %v", p.Graph.File, err)
	}
	for i, w := range mq {
		w.Spec.Options.PlanMaxMsg, w.Spec.Options.PlanMsgSize = planned[i].PlanMaxMsg, planned[i].PlanMsgSize
	}
	return nil
}
