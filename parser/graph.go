package parser

import (
	"fmt"

	"mvdan.cc/sh/v3/syntax"
)

// This file is the parser's product: the checked, typed graph that exec
// consumes. It is plain data. Nothing downstream re-parses strings: sizes are
// bytes, names are resolved to pointers, stage commands are shell ASTs.

// Pos is a position in a .ipcflow file. Line and Col count from 1; Col counts
// bytes, as Go's own tools and mvdan.cc/sh do.
type Pos struct {
	Line, Col int
}

func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Line, p.Col) }

// IsValid reports whether p points into a file.
func (p Pos) IsValid() bool { return p.Line > 0 }

// Graph is a checked script: every name resolved, every option a value.
type Graph struct {
	File   string // the script's path as given by the user
	Params []*Param
	Envs   []*Env
	Sems   []*Sem
	Stages []*Stage
	Edges  []*Edge // in file order; fan-in order follows this order
}

// Param is `param NAME = WORD`. Value is the unexpanded shell word; exec
// expands it against ipcflow's environment at start, unless the user
// overrode it with NAME=VALUE on the command line.
type Param struct {
	Name  string
	Value *syntax.Word // nil for an empty value
	Text  string       // Value as written in the script, for fmt and --dry-run
	Pos   Pos
}

// Env is `env NAME = WORD`, exported into every stage's environment.
type Env struct {
	Name  string
	Value *syntax.Word
	Text  string
	Pos   Pos
}

// Sem is `sem NAME = COUNT`.
type Sem struct {
	Name  string
	Count int // 1..1024
	Pos   Pos
}

// Direction says which way bytes cross a port.
type Direction int

const (
	In  Direction = iota // the stage reads
	Out                  // the stage writes
)

func (d Direction) String() string {
	if d == In {
		return "in"
	}
	return "out"
}

// Port is a declared extra port: `in NAME` or `out NAME` in a stage's
// parentheses. The implicit ports in, out and err are not listed here.
type Port struct {
	Name string
	Dir  Direction
	Pos  Pos
}

// Stage is `stage NAME[N](PORTS) CLAUSES = COMMAND`.
type Stage struct {
	Name string
	Pos  Pos
	// Replicas is N of NAME[N] (SPEC 11): 1 unless written; 0 when N is
	// a param (ReplicasParam) or auto (ReplicasAuto), which exec
	// resolves when it plans the run (ReplicaCount).
	Replicas      int
	ReplicasText  string       // N as written; "" when not written
	ReplicasParam string       // NAME of [$NAME]
	ReplicasAuto  bool         // [auto]: one per CPU ipcflow may use
	Unordered     bool         // unordered: a block to whichever copy is free
	Merge         *syntax.Word // merge WORD: the copies' outputs combined by WORD's command
	MergeText     string       // WORD as written
	MergePos      Pos
	Ports         []*Port
	Uses          []*Sem   // in the order written; exec sorts them globally
	After         []*Stage // must exit 0 before this stage starts
	Dir           *syntax.Word
	DirText       string
	Native        bool     // its mq, shm and mmap ports are its own (SPEC 12, exec/native.go)
	Restart       *Restart // restart WHEN ...: nil when the stage is not restarted (SPEC 14)
	Limits        *Limits  // limit ...: nil when none (SPEC 14)
	// Host is on WORD (SPEC 13): the stage runs there, over ssh (package
	// remote); nil for a stage of this machine. WORD is expanded as a
	// param's value is, so a param may name the host.
	Host     *syntax.Word
	HostText string // WORD as written
	HostPos  Pos

	Command    string       // the command's source text, continuation lines included
	CommandPos Pos          // where Command starts in the file
	Script     *syntax.File // Command parsed as bash (mvdan.cc/sh/v3, LangBash)
}

// Replicated reports whether the stage was written with [N] (N may
// still come to 1).
func (s *Stage) Replicated() bool {
	return s.ReplicasText != "" || s.Replicas > 1 || s.ReplicasParam != "" || s.ReplicasAuto
}

// Port returns the declared port called name, or nil. The implicit ports
// (in, out, err) are not declared and return nil.
func (s *Stage) Port(name string) *Port {
	for _, p := range s.Ports {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Special endpoints: ipcflow's own standard streams.
const (
	Stdin  = "stdin"
	Stdout = "stdout"
	Stderr = "stderr"
)

// Endpoint is one end of an edge: a stage's port, or one of ipcflow's own
// standard streams (Stage nil, Port one of Stdin, Stdout, Stderr).
type Endpoint struct {
	Stage *Stage
	Port  string // "in", "out", "err", a declared port name, or a special
	Pos   Pos
}

func (e Endpoint) String() string {
	if e.Stage == nil {
		return e.Port
	}
	return e.Stage.Name + "." + e.Port
}

// EdgeType names a transport. The values are the words of the language.
type EdgeType string

const (
	Pipe   EdgeType = "pipe"
	FIFO   EdgeType = "fifo"
	MQ     EdgeType = "mq"
	SHM    EdgeType = "shm"
	MMap   EdgeType = "mmap"
	Socket EdgeType = "socket"
)

// Options are an edge's options, validated and turned into values. Zero
// means "not given, use the default".
type Options struct {
	Size    int64  // pipe/fifo buffer, shm ring, mmap initial size: bytes
	Path    string // fifo, mmap
	MaxMsg  int64  // mq
	MsgSize int64  // mq
	Socket  string // socket: "unix" (default), "tcp" or "udp"
	Addr    string // socket tcp/udp: host:port
}

// Edge is one producer endpoint joined to one consumer endpoint. A chain
// `a -> b -> c` and groups `{a, b} -> c` are expanded into single edges.
type Edge struct {
	From, To Endpoint
	Type     EdgeType
	Options  Options
	// Unexpanded are the options whose values hold an expansion
	// (`path="$OUT/rec"`, `size=$SZ`): known, and checked, only when run
	// expands them (Options.Set) with the params. Options holds the rest.
	Unexpanded []OptionWord
	Pos        Pos // the arrow
}

// OptionWord is an option whose value is known only once expanded.
type OptionWord struct {
	Name string
	Word *syntax.Word
	Text string // as written, for labels
	Pos  Pos    // of the value
}
