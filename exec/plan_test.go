package exec

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ipcflow/ipcflow/parser"
)

// The wiring rules of SPEC 4, checked on the plan: which fds each stage
// gets, which objects and which movers (bytes through ipcflow) there are.
func TestWiring(t *testing.T) {
	for _, c := range []struct {
		name   string
		flow   func(b *graphBuilder)
		fds    map[string]string // stage -> its fds, described
		wires  string            // "id:type" of every wire, in order
		movers string            // kinds and ends of every mover
	}{
		{
			name: "direct pipe, nothing through ipcflow",
			flow: func(b *graphBuilder) {
				b.stage("a", "x")
				b.stage("b", "y")
				b.edge("a", "b", "")
			},
			fds: map[string]string{
				"a": "/dev/null | e1 (write) | ipcflow's stderr",
				"b": "e1 (read) | ipcflow's stdout | ipcflow's stderr",
			},
			wires: "e1:pipe",
		},
		{
			name: "stdin and stdout handed over as they are",
			flow: func(b *graphBuilder) {
				b.stage("a", "x")
				b.edge("stdin", "a", "")
				b.edge("a", "stdout", "")
			},
			fds: map[string]string{"a": "ipcflow's stdin | ipcflow's stdout | ipcflow's stderr"},
		},
		{
			name: "err to stdout, out unmentioned",
			flow: func(b *graphBuilder) {
				b.stage("a", "x")
				b.edge("a.err", "stdout", "")
			},
			fds: map[string]string{"a": "/dev/null | ipcflow's stdout | ipcflow's stdout"},
		},
		{
			name: "fan-in into stdout joins into fd 1",
			flow: func(b *graphBuilder) {
				b.stage("a", "x")
				b.stage("b", "y")
				b.edge("a", "stdout", "")
				b.edge("b", "stdout", "")
			},
			fds: map[string]string{
				"a": "/dev/null | e1 (write) | ipcflow's stderr",
				"b": "/dev/null | e2 (write) | ipcflow's stderr",
			},
			wires:  "e1:pipe e2:pipe",
			movers: "join e1 (read), e2 (read) -> ipcflow's stdout",
		},
		{
			name: "fan-out over pipes is a tee",
			flow: func(b *graphBuilder) {
				b.stage("a", "x")
				b.stage("b", "y")
				b.stage("c", "z")
				b.edge("a", "b", "")
				b.edge("a", "c", parser.FIFO)
			},
			fds: map[string]string{
				"a": "/dev/null | p1 (write) | ipcflow's stderr",
				"b": "e1 (read) | ipcflow's stdout | ipcflow's stderr",
				"c": "e2 (read) | ipcflow's stdout | ipcflow's stderr",
			},
			wires:  "p1:pipe e1:pipe e2:fifo",
			movers: "tee p1 (read) -> e1 (write), e2 (write)",
		},
		{
			name: "fan-out over shm is one channel with two readers",
			flow: func(b *graphBuilder) {
				b.stage("a", "x")
				b.stage("b", "y")
				b.stage("c", "z")
				b.edge("a", "b", parser.SHM)
				b.edge("a", "c", parser.SHM)
			},
			fds: map[string]string{
				"a": "/dev/null | e1 (write) | ipcflow's stderr",
				"b": "e1 (read 0) | ipcflow's stdout | ipcflow's stderr",
				"c": "e1 (read 1) | ipcflow's stdout | ipcflow's stderr",
			},
			wires: "e1:shm",
		},
		{
			name: "ports are fds 3 on; an unconnected declared port is /dev/null",
			flow: func(b *graphBuilder) {
				b.stage("a", "x")
				b.stage("m", "y", "in d", "out o", "in unused")
				b.edge("a", "m.d", "")
			},
			fds: map[string]string{
				"m": "/dev/null | ipcflow's stdout | ipcflow's stderr | e1 (read) | /dev/null | /dev/null",
			},
			wires: "e1:pipe",
		},
		{
			name: "several statements into one port join in file order",
			flow: func(b *graphBuilder) {
				b.stage("a", "x")
				b.stage("b", "y")
				b.stage("c", "z")
				b.edge("b", "c", "")
				b.edge("a", "c", "")
			},
			fds:    map[string]string{"c": "p1 (read) | ipcflow's stdout | ipcflow's stderr"},
			movers: "join e1 (read), e2 (read) -> p1 (write)",
		},
		{
			name: "a fifo or socket edge meets a port through a pipe; in gets the object",
			flow: func(b *graphBuilder) {
				b.stage("a", "x", "out o")
				b.stage("b", "y", "in p")
				b.stage("c", "z")
				b.edge("a.o", "b.p", parser.FIFO)
				b.edge("a", "c", parser.Socket, parser.Options{Socket: "tcp"})
			},
			fds: map[string]string{
				"a": "/dev/null | e2 (write) | ipcflow's stderr | p1 (write)",
				"b": "/dev/null | ipcflow's stdout | ipcflow's stderr | p2 (read)",
				"c": "e2 (read) | ipcflow's stdout | ipcflow's stderr",
			},
			wires:  "e1:fifo e2:socket p1:pipe p2:pipe",
			movers: "join p1 (read) -> e1 (write); join e1 (read) -> p2 (write)",
		},
		{
			name: "after a stage upstream of the producer: the edge reads ahead",
			flow: func(b *graphBuilder) {
				b.stage("a", "x")
				b.stage("b", "y")
				b.stage("c", "z").After = []*parser.Stage{b.find("a")}
				b.edge("a", "b", "")
				b.edge("b", "c", "")
			},
			fds:    map[string]string{"c": "e2 (read) | ipcflow's stdout | ipcflow's stderr"},
			movers: "tee p1 (read) -> e2 (write)",
		},
		{
			name: "after a stage tied to the producer only through the consumer: no buffer",
			flow: func(b *graphBuilder) {
				b.stage("a", "x")
				b.stage("p", "y")
				b.stage("c", "z").After = []*parser.Stage{b.find("a")}
				b.edge("a", "c", "")
				b.edge("p", "c", "")
			},
			fds:    map[string]string{"p": "/dev/null | e2 (write) | ipcflow's stderr"},
			movers: "tee p1 (read) -> e1 (write); join e1 (read), e2 (read) -> p2 (write)",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := newGraph()
			c.flow(b)
			p, err := buildPlan(b.g, nil, nil, false, false)
			if err != nil {
				t.Fatal(err)
			}
			for _, sp := range p.Stages {
				want, ok := c.fds[sp.Stage.Name]
				if !ok {
					continue
				}
				var got []string
				for _, e := range sp.Fds {
					got = append(got, e.describe(p))
				}
				if g := strings.Join(got, " | "); g != want {
					t.Errorf("stage %s fds:\n got  %s\n want %s", sp.Stage.Name, g, want)
				}
			}
			if c.wires != "" {
				var got []string
				for _, w := range p.Wires {
					got = append(got, w.ID+":"+w.Spec.Type)
				}
				if g := strings.Join(got, " "); g != c.wires {
					t.Errorf("wires %q, want %q", g, c.wires)
				}
			}
			var got []string
			for _, m := range p.Movers {
				got = append(got, [...]string{"tee", "join", "label"}[m.Kind]+" "+ends(p, m.Srcs)+" -> "+ends(p, m.Dsts))
			}
			if g := strings.Join(got, "; "); g != c.movers {
				t.Errorf("movers %q, want %q", g, c.movers)
			}
		})
	}
}

// With a terminal on stdin, ipcflow reads it for the stage (a stage in a
// background process group would be stopped by SIGTTIN).
func TestTerminalStdinIsCopied(t *testing.T) {
	b := newGraph()
	b.stage("a", "x")
	b.edge("stdin", "a", "")
	p, err := buildPlan(b.g, nil, nil, false, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Stages[0].Fds[0].describe(p); got != "e1 (read)" {
		t.Errorf("stage a's stdin is %s, want e1 (read)", got)
	}
	if len(p.Movers) != 1 || !p.Movers[0].readsStdin() {
		t.Errorf("no copy from ipcflow's stdin: %v", p.Movers)
	}
}

func TestBuildPlanRefuses(t *testing.T) {
	b := newGraph()
	st := b.stage("grep", "grep -f \"$pat\"")
	st.Replicas, st.ReplicasText = 4, "4"
	st.Ports = []*parser.Port{{Name: "pat", Dir: parser.In}}
	if _, err := buildPlan(b.g, nil, nil, false, false); err == nil || !strings.Contains(err.Error(), "stage grep: a replicated stage cannot have declared ports") {
		t.Errorf("replicas with a port: %v", err)
	}
	b = newGraph()
	b.stage("a", "x")
	b.stage("c", "x")
	b.stage("n", "x").Native = true
	b.edge("a", "n", parser.SHM)
	b.edge("c", "n", parser.SHM)
	if _, err := buildPlan(b.g, nil, nil, false, false); err == nil || !strings.Contains(err.Error(), "stage n is native, but its port in cannot be held by it") {
		t.Errorf("native fan-in: %v", err)
	}
	b = newGraph()
	b.g.Params = []*parser.Param{{Name: "N", Value: word("3")}}
	if _, err := buildPlan(b.g, []string{"M=1"}, nil, false, false); err == nil || !strings.Contains(err.Error(), "declares no param M") {
		t.Errorf("undeclared param: %v", err)
	}
	p, err := buildPlan(b.g, []string{"N=7"}, nil, false, false)
	if err != nil || p.Params[0].Value != "7" {
		t.Errorf("override: %v %v", err, p)
	}
}

// TestPlanNative: a native stage's mq, shm and mmap ports are its own
// (exec/native.go): its fd for the port is /dev/null, the wire knows the
// end is native, the object, control page and liveness pipe follow the
// declared ports; its pipe edges are fds as in any stage.
func TestPlanNative(t *testing.T) {
	b := newGraph()
	b.stage("a", "x")
	b.stage("n", "x", "in d", "out o").Native = true
	b.stage("c", "x")
	b.stage("d", "x")
	b.stage("m", "x")
	b.edge("a", "n", parser.SHM)
	b.edge("d", "n.d", parser.Pipe)
	b.edge("n", "c", parser.MQ)
	b.edge("n.o", "m", parser.MMap)
	p, err := buildPlan(b.g, nil, nil, false, false)
	if err != nil {
		t.Fatal(err)
	}
	var sp *StagePlan
	for _, s := range p.Stages {
		if s.Stage.Name == "n" {
			sp = s
		}
	}
	if sp.Fds[0].Kind != EndNull || sp.Fds[1].Kind != EndNull || sp.Fds[3].Kind != EndRead || sp.Fds[4].Kind != EndNull {
		t.Errorf("fds 0-4: %+v", sp.Fds[:5])
	}
	if len(sp.Natives) != 3 || len(sp.Fds) != 5+2+3+3 {
		t.Fatalf("natives %+v, %d fds", sp.Natives, len(sp.Fds))
	}
	want := map[string][3]int{"in": {5, -1, 6}, "out": {7, 8, 9}, "o": {10, 11, 12}}
	for _, np := range sp.Natives {
		if w := want[np.Port]; [3]int{np.Obj, np.Ctl, np.Life} != w {
			t.Errorf("port %s at %d %d %d, want %v", np.Port, np.Obj, np.Ctl, np.Life, w)
		}
		w := p.Wires[np.Wire]
		if np.Port == "in" && (!w.Spec.NativeReaders[0] || w.Spec.NativeWriter) || np.Port != "in" && (!w.Spec.NativeWriter || w.Spec.HasNative() && len(w.Spec.NativeReaders) > 0 && w.Spec.NativeReaders[0]) {
			t.Errorf("port %s: wire %s spec %+v", np.Port, w.ID, w.Spec)
		}
	}
	pr, err := p.Process(sp, FlowNames{ID: "RUN", Dir: "/run/x"})
	if err != nil {
		t.Fatal(err)
	}
	env := strings.Join(pr.Env, "\n")
	for _, want := range []string{
		"IPCFLOW_PORT_IN=ipcflow-port/1 shm reader fd=5 life=6 reader=0 readers=1 capacity=1048576 name=/dev/shm/ipcflow.RUN.e1",
		"IPCFLOW_PORT_O=ipcflow-port/1 mmap writer fd=10 ctl=11 life=12 readers=1 name=/run/x/e4.mmap",
		"d=/dev/fd/3",
	} {
		if !strings.Contains(env, want) {
			t.Errorf("environment lacks %q", want)
		}
	}
	if strings.Contains(env, "\no=/dev/fd/") {
		t.Errorf("a native declared port has a variable")
	}
}

// Param and env values expand as bash expands an assignment's value:
// quotes and backslashes removed, no splitting, no globbing, no brace
// expansion.
func TestParamValuesExpandAsAssignments(t *testing.T) {
	cases := []struct{ src, want string }{
		{`a\ b`, "a b"},
		{`c\"d`, `c"d`},
		{`"q r"`, "q r"},
		{`'x\y'`, `x\y`},
		{`${SPACED}`, "1  2"},
		{`*`, "*"},
		{`${NOPE:-dflt}\ x`, "dflt x"},
		{`{a,b}`, "{a,b}"},
		{`x{a,b}y`, "x{a,b}y"},
		{`{1..3}`, "{1..3}"},
		{`\{a,b\}`, "{a,b}"},
		{`a\\{b,c}`, `a\{b,c}`},
		{`"{a,b}"c{d,e}`, "{a,b}c{d,e}"},
	}
	for _, c := range cases {
		b := newGraph()
		b.g.Params = []*parser.Param{{Name: "P", Value: word(c.src)}}
		p, err := buildPlan(b.g, nil, []string{"SPACED=1  2"}, false, false)
		if err != nil {
			t.Errorf("%s: %v", c.src, err)
			continue
		}
		if got := p.Params[0].Value; got != c.want {
			t.Errorf("param P = %s: got %q, bash gives %q", c.src, got, c.want)
		}
	}
}

// size= on a fan-out or fan-in sizes the whole edge: the pipe into the tee
// and the pipe out of the join too, not only the branches.
func TestFanPipesTakeTheEdgeSize(t *testing.T) {
	b := newGraph()
	for _, n := range []string{"a", "b", "c", "x", "y", "d"} {
		b.stage(n, "cat")
	}
	b.edge("a", "b", parser.Pipe, parser.Options{Size: 1 << 20})
	b.edge("a", "c", parser.Pipe, parser.Options{Size: 1 << 20})
	b.edge("x", "d", parser.Pipe, parser.Options{Size: 8 << 10})
	b.edge("y", "d", parser.FIFO, parser.Options{Size: 16 << 10})
	p, err := buildPlan(b.g, nil, nil, false, false)
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int64{}
	for _, w := range p.Wires {
		if w.Internal() {
			sizes[w.Purpose] = w.Spec.Options.Size
		}
	}
	want := map[string]int64{"fan-out of a.out": 1 << 20, "fan-in into d.in": 16 << 10}
	for purpose, size := range want {
		if sizes[purpose] != size {
			t.Errorf("%s: pipe size %d, want %d (internal pipes: %v)", purpose, sizes[purpose], size, sizes)
		}
	}
}

// Expanding a param, env or dir word never panics: what needs a shell is
// an error (the parser refuses it first; this guards a Graph built some
// other way). mvdan.cc/sh's expander dereferenced a nil ProcSubst
// handler for <( ).
func TestParamExpandNeverPanics(t *testing.T) {
	for _, src := range []string{"$(echo hi)", "`date`", "<(ls)", ">(cat)", "x$(y)z", "${X=1}", "$((X=1))"} {
		v, err := assignValue([]string{"HOME=/h"}, word(src))
		if err == nil {
			t.Errorf("%s: got %q, want an error", src, v)
		}
	}
}

// A pipe or fifo edge the script gives no size gets stagePipeSize, in the
// plan (so --dry-run shows it); a size the script sets and ipcflow's own
// pipes are left alone.
func TestStagePipesAreLarger(t *testing.T) {
	b := newGraph()
	b.stage("a", "x")
	b.stage("b", "y")
	b.stage("c", "z")
	b.edge("a", "b", "")
	b.edge("b", "c", parser.FIFO, parser.Options{Size: 1 << 20})
	b.edge("c", "stdout", parser.SHM)
	p, err := buildPlan(b.g, nil, nil, false, false)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"e1": stagePipeSize, "e2": 1 << 20, "e3": 0}
	for _, w := range p.Wires {
		if got := w.Spec.Options.Size; got != want[w.ID] {
			t.Errorf("%s (%s): size %d, want %d", w.ID, w.Spec.Type, got, want[w.ID])
		}
	}
}

// A pipe or fifo edge that crosses hosts gets remotePipeSize, since ssh
// masters move it here; the others keep stagePipeSize (one between two
// stages on one host too: it stays there), and a size the script sets
// stays.
func TestRemoteEdgePipesAreDeeper(t *testing.T) {
	p, err := planOf(t, `stage a on h1 = seq 3
stage b on h2 = cat
stage c = cat
stage d = cat
stage e on h1 = cat
stage f on h1 = cat
a -> b
b -[fifo]-> c
c -> d
d -[pipe size=64K]-> e
e -> f
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	// e5 joins two stages on h1: it stays there, and is a stage pipe.
	want := map[string]int64{"e1": remotePipeSize, "e2": remotePipeSize, "e3": stagePipeSize, "e4": 64 << 10, "e5": stagePipeSize}
	for _, w := range p.Wires {
		if got := w.Spec.Options.Size; got != want[w.ID] {
			t.Errorf("%s (%s): size %d, want %d", w.ID, w.Spec.Type, got, want[w.ID])
		}
	}
}

// A one-to-one pipe or fifo edge between two stages on the same host
// (as a param names it too) stays there: the reader's port names the
// writer and its fd. Not one to another host, a local stage, a fan-out,
// nor another type.
func TestSameHostEdgesStayThere(t *testing.T) {
	p, err := planOf(t, `param H = h1
stage a on h1 = seq 3
stage b on "$H" = cat
stage c on h2 = cat
stage d on h1 = cat
stage e on h1 = cat
stage f on h1 = cat
stage g = cat
a -> b
b.out -> c.in
c -> d
d -[fifo]-> e
e -[shm]-> f
f -> g
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	procs, err := p.Processes(FlowNames{ID: "x", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	type local struct {
		stage  string
		fd     int
		handTo string
		handFd int
	}
	var got []local
	for _, pr := range procs {
		if pr.Remote == nil {
			continue
		}
		for fd, port := range pr.Remote.Ports {
			if port.Local {
				got = append(got, local{pr.Name, fd, port.HandTo, port.HandFd})
			}
		}
	}
	want := []local{{"a", 1, "", 0}, {"b", 0, "a", 1}, {"d", 1, "", 0}, {"e", 0, "d", 1}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("local ports %v, want %v", got, want)
	}
}
