package exec

// Native stages (SPEC 8, 12): a stage marked native holds each of its
// ports that is one end of an mq, shm or mmap edge itself. The plan gives
// that end no pipe and no bridge: the wire's channel is told the end is
// native (channels.Spec.NativeWriter, NativeReaders), the stage's fd for
// the port is /dev/null, and the end's descriptors (the object, an mq
// or mmap edge's control page, the liveness pipe) follow the stage's
// declared ports in its fd table, described to it in IPCFLOW_PORT_<PORT>
// (package native). A port whose edges do not end in one such object of
// their own (a fan-in, a fan-out copied by a tee) cannot be held so: the
// plan refuses it, naming the port, rather than hand it a pipe that its
// program does not expect.

import (
	"cmp"
	"fmt"
	"os"
	"strings"

	"github.com/ipcflow/ipcflow/budget"
	"github.com/ipcflow/ipcflow/channels"
	"github.com/ipcflow/ipcflow/native"
	"github.com/ipcflow/ipcflow/parser"
)

// NativePort is one port a native stage holds itself.
type NativePort struct {
	Port string // "in", "out", "err" or a declared port
	Wire int    // index into Plan.Wires
	End  int    // channels.WriterEnd, or the reader's index
	// Fds are where the parts are in the stage's fd table: the object,
	// the control page (-1 for shm) and the liveness pipe.
	Obj, Ctl, Life int
}

// isMQ: the one type a replicated stage's runner takes work from.
func isMQ(t parser.EdgeType) bool { return t == "mq" }

// nativeTypes are the edge types whose ends a native stage holds.
func nativeType(t parser.EdgeType) bool {
	ct, ok := channels.Lookup(string(t))
	return ok && ct.Caps.Native
}

// nativePort decides whether port of native stage sp, whose end was
// wired to e, is held by the stage: e is one end of an edge wire of a type
// a native stage can hold. in says the port is one the stage reads.
// A port with such edges that did not end in one (a tee, a join) is
// refused (Plan.nativeErrs).
func (p *Plan) nativePort(sp *StagePlan, port string, in bool, e End) bool {
	st := sp.Stage
	if p.holdNative(sp, port, in, e, nativeType) {
		return true
	}
	for _, x := range p.Graph.Edges {
		mine := x.From.Stage == st && x.From.Port == port
		if in {
			mine = x.To.Stage == st && x.To.Port == port
		}
		if mine && nativeType(x.Type) {
			how := "its edges are copied through ipcflow (a fan-out over mq, over mixed types or options, or whose branches meet again)"
			if in {
				how = "several edges join into it (a fan-in)"
			}
			p.nativeErrs = append(p.nativeErrs, fmt.Sprintf("%s:%s: stage %s is native, but its port %s cannot be held by it: %s; a native port is one edge, or a fan-out over one shm or mmap edge",
				p.Graph.File, st.Pos, st.Name, port, how))
			return false
		}
	}
	return false
}

// holdNative makes sp hold port's end e itself when e is one end of an
// edge wire (no tee's or join's pipe) of a type that ok accepts, and says
// whether it did.
func (p *Plan) holdNative(sp *StagePlan, port string, in bool, e End, ok func(parser.EdgeType) bool) bool {
	if !(e.Kind == EndRead && in || e.Kind == EndWrite && !in) || p.Wires[e.Wire].Internal() || !ok(parser.EdgeType(p.Wires[e.Wire].Spec.Type)) {
		return false
	}
	w := p.Wires[e.Wire]
	np := NativePort{Port: port, Wire: e.Wire, End: channels.WriterEnd}
	if in {
		np.End = e.Index
		if w.Spec.NativeReaders == nil {
			w.Spec.NativeReaders = make([]bool, w.Spec.Readers)
		}
		w.Spec.NativeReaders[e.Index] = true
	} else {
		w.Spec.NativeWriter = true
	}
	sp.Natives = append(sp.Natives, np)
	return true
}

// placeNatives puts the native ports' descriptors after sp's ports.
func (p *Plan) placeNatives(sp *StagePlan) {
	if len(sp.Natives) == 0 {
		return // most stages: nothing to do, nothing made
	}
	seen := map[string]string{}
	for i := range sp.Natives {
		np := &sp.Natives[i]
		env := native.Env(np.Port)
		if other, dup := seen[env]; dup {
			p.nativeErrs = append(p.nativeErrs, fmt.Sprintf("%s:%s: stage %s: ports %s and %s would both be described in %s",
				p.Graph.File, sp.Stage.Pos, sp.Stage.Name, other, np.Port, env))
		}
		seen[env] = np.Port
		add := func(part int) int {
			sp.Fds = append(sp.Fds, End{Kind: EndNative, Wire: np.Wire, Index: np.End, Fd: part})
			return len(sp.Fds) - 1
		}
		np.Obj, np.Ctl = add(channels.NativeObject), -1
		if p.Wires[np.Wire].Spec.Type != "shm" {
			np.Ctl = add(channels.NativeControl)
		}
		np.Life = add(channels.NativeLife)
	}
}

// nativeSpec is what IPCFLOW_PORT_<PORT> says of np in the flow named
// names: as the channel will make the object (channels/shm.go, mq.go).
func (p *Plan) nativeSpec(np NativePort, names FlowNames) native.Spec {
	w := p.Wires[np.Wire]
	o := w.Spec.Options
	s := native.Spec{Version: native.Version, Type: w.Spec.Type, Role: native.RoleWriter,
		Fd: np.Obj, Ctl: np.Ctl, Life: np.Life, Readers: w.Spec.Readers}
	if np.End != channels.WriterEnd {
		s.Role, s.Reader = native.RoleReader, np.End
	}
	prefix := "ipcflow." + names.ID + "."
	switch s.Type {
	case "shm":
		s.Capacity = channels.ShmCapacity(o.Size)
		s.Name = "/dev/shm/" + prefix + w.ID
	case "mq":
		s.MaxMsg, s.MsgSize = budget.ReadMQLimits().Resolve(o.Queue())
		s.Name = "/" + prefix + w.ID
	case "mmap":
		s.Name = cmp.Or(o.Path, names.Dir+"/"+w.ID+".mmap")
	}
	return s
}

// nativeEnv is the variables that describe sp's native ports.
func (p *Plan) nativeEnv(sp *StagePlan, names FlowNames) []string {
	var env []string
	for _, np := range sp.Natives {
		env = append(env, native.Env(np.Port)+"="+p.nativeSpec(np, names).String())
	}
	return env
}

// takeNative hands over the file for native end e (its object, control
// page or liveness pipe); the taker closes it, as with take.
func (w *liveWire) takeNative(e End) *os.File {
	if n, ok := w.ch.(channels.NativeEnds); ok {
		return n.NativeFile(e.Index, e.Fd)
	}
	return nil
}

// describeNative names a native end's part for --dry-run.
func describeNative(p *Plan, e End) string {
	w := p.Wires[e.Wire]
	role := "writer"
	if e.Index != channels.WriterEnd {
		role = "reader"
		if w.Spec.Readers > 1 {
			role = fmt.Sprintf("reader %d", e.Index)
		}
	}
	part := [...]string{"the " + w.Spec.Type + " object", "its control page", "its liveness pipe"}[e.Fd]
	return fmt.Sprintf("%s native %s: %s", w.ID, role, part)
}

// nativeError is the plan's refusals of native ports, one per line.
func (p *Plan) nativeError() error {
	if len(p.nativeErrs) == 0 {
		return nil
	}
	return &UsageError{Msg: strings.Join(p.nativeErrs, "\n"), Positioned: true}
}
