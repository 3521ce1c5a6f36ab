package exec

import (
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/channels"
	"github.com/ipcflow/ipcflow/parser"
)

// wire turns the graph's edges into wires, movers and each stage's fd
// table (SPEC 4):
//
//   - A port with one edge, joined to a port with one edge, is one channel:
//     for a pipe edge, a pipe(2) between the two processes.
//   - A pipe edge from stdin to a port with no other input hands over
//     ipcflow's fd 0 itself; a pipe edge from a port with no other output to
//     stdout (stderr) that nothing else writes hands over fd 1 (2) itself.
//   - A port with several outgoing edges (fan-out) writes one channel with a
//     reader per edge when the type serves several readers (Caps.FanOut) and
//     the edges agree on type and options; otherwise it writes a pipe of
//     ipcflow's own that a Tee copies to each edge's channel.
//   - A port with several incoming edges (fan-in) reads a pipe that a Join
//     fills with each edge's stream in file order; stdout and stderr are
//     joined straight into ipcflow's fd.
//   - An unmentioned in reads /dev/null, out and err are ipcflow's own fds 1
//     and 2; an unmentioned declared port is /dev/null.
//
// It goes in three phases, each in file order so that plans (and their
// ids) are the same every run: the producers' (wireProducer), the
// consumers' (wireConsumer), and each stage's fd table (planStage, which
// gives a port a pipe where its object cannot be opened by path:
// openablePort).
func (p *Plan) wire() {
	w := p.newWiring()
	for _, from := range producerOrder(p.Graph) {
		p.wireProducer(w, from)
	}
	for _, to := range consumerOrder(p.Graph) {
		p.wireConsumer(w, to)
	}
	for _, st := range p.Graph.Stages {
		p.Stages = append(p.Stages, p.planStage(w, st))
	}
}

// wiring is what the phases of Plan.wire hand on: the producers' phase
// settles what each producer endpoint writes into and what each edge's
// consumer side reads from; the consumers' phase what each consumer
// endpoint reads; the stages' phase takes both.
type wiring struct {
	outgoing map[string][]int // producer endpoint -> edge indexes, file order
	incoming map[string][]int // consumer endpoint -> edge indexes, file order
	prodEnd  map[string]End   // what a producer endpoint writes into
	edgeRead []End            // what an edge's consumer side reads from
	edgeDone []bool           // the edge's consumer side is settled already
	consEnd  map[string]End   // what a consumer endpoint reads from
	// readAhead: the edge must be read to its end even while its
	// consumer does not read it (a tee that reads ahead, and spills):
	// decided once for every edge (planReadAhead).
	readAhead []bool
}

func (p *Plan) newWiring() *wiring {
	w := &wiring{
		outgoing: map[string][]int{},
		incoming: map[string][]int{},
		prodEnd:  map[string]End{},
		edgeRead: make([]End, len(p.Graph.Edges)),
		edgeDone: make([]bool, len(p.Graph.Edges)),
		consEnd:  map[string]End{},
	}
	for i, e := range p.Graph.Edges {
		w.outgoing[e.From.String()] = append(w.outgoing[e.From.String()], i)
		w.incoming[e.To.String()] = append(w.incoming[e.To.String()], i)
	}
	w.readAhead = p.planReadAhead(w)
	return w
}

// wireProducer wires the edges out of producer endpoint from: one edge
// straight into its object; a fan-out into one channel of many readers;
// else through a tee.
func (p *Plan) wireProducer(w *wiring, from string) {
	edges := w.outgoing[from]
	if len(edges) == 1 && !w.readAhead[edges[0]] {
		p.wireEdge(w, edges[0])
		return
	}
	// Fan-out, or one edge whose consumer starts only after its
	// producer has exited: a Tee buffers (and spills) what the
	// consumer cannot take yet, where a plain pipe would block the
	// producer for good.
	if wr, ok := p.fanOutGroup(w, from, edges); ok {
		w.prodEnd[from] = writeEnd(wr)
		for k, i := range edges {
			w.edgeRead[i] = readEnd(wr, k)
		}
		return
	}
	p.teeEdges(w, from, edges)
}

// wireEdge wires edge i, its producer's only one: ipcflow's own fd where
// the edge is a pipe from stdin or to stdout or stderr, else the edge's
// object.
func (p *Plan) wireEdge(w *wiring, i int) {
	e := p.Graph.Edges[i]
	from, to := e.From.String(), e.To.String()
	switch {
	case e.Type == parser.Pipe && e.To.Stage == nil && len(w.incoming[to]) == 1 && e.From.Stage != nil:
		// a -> stdout: the stage writes ipcflow's fd itself.
		w.prodEnd[from] = ownEnd(specialFd(e.To.Port))
		w.edgeDone[i] = true
	case e.Type == parser.Pipe && e.From.Stage == nil && !p.stdinTTY:
		// stdin -> a: fd 0 itself (or a join's source). Not a
		// terminal, though: a stage is a process group of its own,
		// in the background, and reading the terminal would stop
		// it (SIGTTIN); ipcflow, in the foreground, reads for it.
		w.edgeRead[i] = ownEnd(0)
	case e.From.Stage == nil:
		// stdin over another type: copy fd 0 into the channel.
		wr := p.addEdgeWire(e, 1, fmt.Sprintf("edge %s -> %s", e.From, e.To))
		p.Movers = append(p.Movers, &MoverPlan{Kind: Join, Srcs: []End{ownEnd(0)}, Dsts: []End{writeEnd(wr)},
			Purpose: "copy ipcflow's stdin into " + p.Wires[wr].ID})
		w.edgeRead[i] = readEnd(wr, 0)
	default:
		wr := p.addEdgeWire(e, 1, fmt.Sprintf("edge %s -> %s", e.From, e.To))
		w.prodEnd[from] = writeEnd(wr)
		w.edgeRead[i] = readEnd(wr, 0)
	}
}

// teeEdges wires the edges out of from through a Tee: the producer writes
// a pipe of ipcflow's own (stdin is read as it is), and the tee copies it
// into each edge's own object.
func (p *Plan) teeEdges(w *wiring, from string, edges []int) {
	g := p.Graph
	var src End
	if g.Edges[edges[0]].From.Stage == nil {
		src = ownEnd(0)
	} else {
		t := p.addPipe("fan-out of "+from, p.pipeSize(edges))
		w.prodEnd[from] = writeEnd(t)
		src = readEnd(t, 0)
	}
	tee := &MoverPlan{Kind: Tee, Srcs: []End{src}, Purpose: "fan-out of " + from}
	if len(edges) == 1 {
		tee.Purpose = "buffer of " + from + " (its reader runs after it)"
	}
	recorded := map[string]string{} // mmap path= -> the wire that records it
	for _, i := range edges {
		e := g.Edges[i]
		tee.ReadAhead = tee.ReadAhead || w.readAhead[i]
		to := e.To.String()
		if e.Type == parser.Pipe && e.To.Stage == nil && len(w.incoming[to]) == 1 {
			tee.Dsts = append(tee.Dsts, ownEnd(specialFd(e.To.Port)))
			w.edgeDone[i] = true
			continue
		}
		purpose := fmt.Sprintf("edge %s -> %s", e.From, e.To)
		if len(edges) > 1 {
			purpose += " (fan-out)"
		}
		wr := p.addEdgeWire(e, 1, purpose)
		if path := p.Wires[wr].Spec.Options.Path; e.Type == parser.MMap && path != "" {
			// An mmap fan-out sharing one path= (the parser allows
			// no other sharing) whose branches could not share one
			// file: every branch carries the whole stream, so the
			// first keeps the recording and the rest buffer in the
			// run directory.
			if first, ok := recorded[path]; ok {
				p.Wires[wr].Spec.Options.Path = ""
				p.Wires[wr].Purpose += ", recorded by " + first
			} else {
				recorded[path] = p.Wires[wr].ID
			}
		}
		tee.Dsts = append(tee.Dsts, writeEnd(wr))
		w.edgeRead[i] = readEnd(wr, 0)
	}
	p.Movers = append(p.Movers, tee)
}

// wireConsumer settles what consumer endpoint to reads: its one edge's
// read end, or a Join of all its edges; into ipcflow's own stdout or
// stderr through a mover where the producers' phase did not already.
func (p *Plan) wireConsumer(w *wiring, to string) {
	edges := w.incoming[to]
	special := p.Graph.Edges[edges[0]].To.Stage == nil
	if len(edges) == 1 {
		i := edges[0]
		switch {
		case w.edgeDone[i]:
		case special:
			p.Movers = append(p.Movers, &MoverPlan{Kind: Join, Srcs: []End{w.edgeRead[i]},
				Dsts: []End{ownEnd(specialFd(to))}, Purpose: "copy into ipcflow's " + to})
		default:
			w.consEnd[to] = w.edgeRead[i]
		}
		return
	}
	join := &MoverPlan{Kind: Join, Purpose: "fan-in into " + to}
	for _, i := range edges {
		join.Srcs = append(join.Srcs, w.edgeRead[i])
	}
	if special {
		join.Dsts = []End{ownEnd(specialFd(to))}
	} else {
		j := p.addPipe("fan-in into "+to, p.pipeSize(edges))
		join.Dsts = []End{writeEnd(j)}
		w.consEnd[to] = readEnd(j, 0)
	}
	p.Movers = append(p.Movers, join)
}

// planStage builds stage st's fd table from what the producers and
// consumers settled: in, out and err, then its declared ports from fd 3
// (each through a pipe where its object cannot be opened by path), and
// with --label its stderr through a labelling copier.
func (p *Plan) planStage(w *wiring, st *parser.Stage) *StagePlan {
	sp := &StagePlan{Stage: st}
	get := func(port string, m map[string]End, def End) End {
		if e, ok := m[st.Name+"."+port]; ok {
			return e
		}
		return def
	}
	sp.Fds = []End{get("in", w.consEnd, nullEnd()), get("out", w.prodEnd, ownEnd(1)), get("err", w.prodEnd, ownEnd(2))}
	if st.Native {
		for fd, port := range []string{"in", "out", "err"} {
			if p.nativePort(sp, port, fd == 0, sp.Fds[fd]) {
				sp.Fds[fd] = nullEnd()
			}
		}
	}
	// An unordered replicated stage fed by one mq edge takes its work
	// from the queue itself: its runner receives each message for one
	// copy (SPEC 11), with no bridge and no pipe before it.
	if st.Replicated() && st.Unordered && p.holdNative(sp, "in", true, sp.Fds[0], isMQ) {
		sp.Fds[0] = nullEnd()
		sp.WorkQueue = true
	}
	for _, port := range st.Ports {
		m := w.consEnd
		if port.Dir == parser.Out {
			m = w.prodEnd
		}
		e := get(port.Name, m, nullEnd())
		if st.Native && p.nativePort(sp, port.Name, port.Dir == parser.In, e) {
			sp.Ports = append(sp.Ports, PortSlot{Name: port.Name, Fd: len(sp.Fds), Native: true})
			sp.Fds = append(sp.Fds, nullEnd())
			continue
		}
		sp.Ports = append(sp.Ports, PortSlot{Name: port.Name, Fd: len(sp.Fds)})
		sp.Fds = append(sp.Fds, p.openablePort(st.Name, port, e))
	}
	p.placeNatives(sp)
	if p.Label && sp.Fds[2].isOwn(2) {
		l := p.addPipe("--label of "+st.Name, 0)
		sp.Fds[2] = writeEnd(l)
		p.Movers = append(p.Movers, &MoverPlan{Kind: Label, Srcs: []End{readEnd(l, 0)}, Dsts: []End{ownEnd(2)},
			Stage: st.Name, Purpose: "prefix " + st.Name + "'s stderr lines"})
	}
	return sp
}

// openablePort is what a declared port's fd is: e itself when the command can
// open its /dev/fd/N path as a file, else a pipe of ipcflow's own with a
// mover between it and e. Linux opens an anonymous pipe's /dev/fd/N at
// any time (bash's <( ) relies on it); a named FIFO's waits for a writer
// (for good, once the producer has exited) and a socket's cannot be
// opened at all (ENXIO), so a fifo or socket edge meets a port through a
// pipe. The mover splices, and passes end of file and EPIPE on.
func (p *Plan) openablePort(stage string, port *parser.Port, e End) End {
	var what string
	var size int64
	switch e.Kind {
	case EndRead, EndWrite:
		w := p.Wires[e.Wire]
		writer, reader := channels.OpensAsFile(w.Spec.Type, w.Spec.Options)
		if (e.Kind == EndWrite && writer) || (e.Kind == EndRead && reader) {
			return e
		}
		what, size = w.ID, w.Spec.Options.Size
	case EndOwn:
		// ipcflow's own stdin or stdout may be a socket or a named FIFO
		// too (a service manager's socket, `ipcflow run f < fifo`).
		if opensAsFile(e.Fd) {
			return e
		}
		what = e.describe(p)
	default:
		return e
	}
	name := "port " + stage + "." + port.Name
	pp := p.addPipe(name+": a pipe, so that its /dev/fd path opens as bash's <( ) does", size)
	if port.Dir == parser.In {
		p.Movers = append(p.Movers, &MoverPlan{Kind: Join, Srcs: []End{e}, Dsts: []End{writeEnd(pp)}, Purpose: "copy " + what + " into " + name})
		return readEnd(pp, 0)
	}
	p.Movers = append(p.Movers, &MoverPlan{Kind: Join, Srcs: []End{readEnd(pp, 0)}, Dsts: []End{e}, Purpose: "copy " + name + " into " + what})
	return writeEnd(pp)
}

// opensAsFile reports whether ipcflow's own fd can be opened by its
// /dev/fd path at any time: anything but a socket (ENXIO) or a named FIFO
// (whose open waits for a partner).
var opensAsFile = func(fd int) bool {
	link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil || strings.HasPrefix(link, "pipe:") {
		return true
	}
	if strings.HasPrefix(link, "socket:") {
		return false
	}
	var st unix.Stat_t
	return unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO
}

// fanOutGroup makes one channel with a reader per edge when the edges
// agree on a type that serves several readers.
func (p *Plan) fanOutGroup(w *wiring, from string, edges []int) (int, bool) {
	first := p.Graph.Edges[edges[0]]
	t, _ := channels.Lookup(string(first.Type))
	if !t.Caps.FanOut || first.From.Stage == nil {
		return 0, false
	}
	for _, i := range edges {
		e := p.Graph.Edges[i]
		if e.Type != first.Type || !reflect.DeepEqual(e.Options, first.Options) || e.To.Stage == nil || w.readAhead[i] {
			return 0, false
		}
	}
	// One channel with a cursor per reader moves at the pace of its
	// slowest reader. If the branches meet again (a join that reads one
	// branch before the other, a stage reading two of them, one branch
	// waiting on another with after), a branch held back downstream stops
	// the others for good; a Tee spills for it instead.
	if p.branchesMeet(edges) {
		return 0, false
	}
	wr := p.addEdgeWire(first, len(edges), "fan-out of "+from)
	for _, i := range edges[1:] {
		p.Wires[wr].Edges = append(p.Wires[wr].Edges, p.Graph.Edges[i])
	}
	return wr, true
}

func (p *Plan) addEdgeWire(e *parser.Edge, readers int, purpose string) int {
	id := "e" + strconv.Itoa(p.edgeNumber(e))
	p.Wires = append(p.Wires, &Wire{
		ID:    id,
		Edges: []*parser.Edge{e},
		Spec: channels.Spec{ID: id, Type: string(e.Type), Readers: readers, Options: channels.Options{
			Size: e.Options.Size, Path: e.Options.Path, MaxMsg: e.Options.MaxMsg,
			MsgSize: e.Options.MsgSize, Socket: e.Options.Socket, Addr: e.Options.Addr,
		}},
		Purpose: purpose,
	})
	return len(p.Wires) - 1
}

// pipeSize is the largest size= that the pipe and fifo edges among edges
// give (0: none does). A fan-out's pipe into its tee and a fan-in's pipe
// out of its join take it: `a -[pipe size=1MiB]-> {b, c}` means the whole
// edge, not only the branches.
func (p *Plan) pipeSize(edges []int) int64 {
	var size int64
	for _, i := range edges {
		e := p.Graph.Edges[i]
		if e.Type == parser.Pipe || e.Type == parser.FIFO {
			size = max(size, e.Options.Size)
		}
	}
	return size
}

// addPipe adds a pipe of ipcflow's own; size 0 is the system's default.
func (p *Plan) addPipe(purpose string, size int64) int {
	n := 1
	for _, w := range p.Wires {
		if w.Internal() {
			n++
		}
	}
	id := "p" + strconv.Itoa(n)
	p.Wires = append(p.Wires, &Wire{ID: id, Spec: channels.Spec{ID: id, Type: "pipe", Readers: 1, Options: channels.Options{Size: size}}, Purpose: purpose})
	return len(p.Wires) - 1
}

// edgeNumber is e's 1-based position in the file's edges: its id.
func (p *Plan) edgeNumber(e *parser.Edge) int {
	for i, x := range p.Graph.Edges {
		if x == e {
			return i + 1
		}
	}
	return 0
}

func specialFd(port string) int {
	switch port {
	case parser.Stdin:
		return 0
	case parser.Stdout:
		return 1
	}
	return 2
}

// producerOrder and consumerOrder list the edges' producer (consumer)
// endpoints in the order of their first edge in the file, so that plans
// (and their ids) are the same every run.
func producerOrder(g *parser.Graph) []string {
	var keys []string
	seen := map[string]bool{}
	for _, e := range g.Edges {
		if k := e.From.String(); !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	return keys
}

func consumerOrder(g *parser.Graph) []string {
	var keys []string
	seen := map[string]bool{}
	for _, e := range g.Edges {
		if k := e.To.String(); !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	return keys
}

// planReadAhead says, for each edge, whether it must be read to its end
// even while its consumer does not read it: waitsForProducer or
// waitsBehind. Both need an after clause somewhere, and most flows have
// none: then the answer is no for every edge at once (a 5,000-stage chain
// took 0.4 s more to plan when each edge asked both questions).
func (p *Plan) planReadAhead(w *wiring) []bool {
	ahead := make([]bool, len(p.Graph.Edges))
	if !slices.ContainsFunc(p.Graph.Stages, func(st *parser.Stage) bool { return len(st.After) > 0 }) {
		return ahead
	}
	for i, e := range p.Graph.Edges {
		ahead[i] = p.waitsForProducer(e) || p.waitsBehind(e, w.incoming[e.To.String()])
	}
	return ahead
}

// waitsForProducer reports whether e's consumer starts only after a stage
// that cannot end while e is not read: e's producer itself, or any stage
// tied to it by data or after without passing through the consumer (one
// upstream of the producer waits for it to read, one downstream for its
// end of file, and so on along the ties). Then nothing would read e while
// the producer writes it, the producer would block for good, and with it
// the stage the consumer waits for: e needs a tee that reads ahead.
// (`s0 -> s1 -> s2` with `s2 after s0` hung so: s1 filled its pipe to s2.)
// A stage waited for that is tied to the producer only through the
// consumer (`{a, p} -> c` with `c after a`) needs nothing on p's edge.
func (p *Plan) waitsForProducer(e *parser.Edge) bool {
	if e.From.Stage == nil || e.To.Stage == nil || len(e.To.Stage.After) == 0 {
		return false
	}
	tied := p.tiedTo(e.From.Stage, e.To.Stage)
	for _, a := range e.To.Stage.After {
		if tied[a] {
			return true
		}
	}
	return false
}

// waitsBehind reports whether e, one of several edges joined into one
// port (or stdout, stderr), is read only after an earlier one that cannot
// end while e is not read: the join reads its sources in order, and an
// earlier source's stream (through its producer, or any stage upstream of
// it) waits with after for a stage tied to e's producer. The random-graph
// test found `{s3, ..., s5} -> stdout` with `s2 -> s5` and `s3 after s2`
// hung so: s5 filled its pipe to the join, which waited for s3, which
// waited for s2, which waited for s5. e then needs a tee that reads ahead.
// joined are the indexes of the edges into e's consumer endpoint, in file
// order.
func (p *Plan) waitsBehind(e *parser.Edge, joined []int) bool {
	if e.From.Stage == nil {
		return false
	}
	waited := map[*parser.Stage]bool{}
	for _, i := range joined {
		b := p.Graph.Edges[i]
		if b == e {
			break
		}
		if b.From.Stage != nil {
			for s := range p.upstream(b.From.Stage) {
				for a := range afterClosure(s) {
					waited[a] = true
				}
			}
		}
	}
	if len(waited) == 0 {
		return false
	}
	for s := range p.tiedTo(e.From.Stage, e.To.Stage) {
		if waited[s] {
			return true
		}
	}
	return false
}

// tiedTo is the set of stages tied to from by data edges or after
// clauses, either way, not passing through except (which may be nil).
func (p *Plan) tiedTo(from, except *parser.Stage) map[*parser.Stage]bool {
	ties := map[*parser.Stage][]*parser.Stage{}
	tie := func(a, b *parser.Stage) {
		if a != nil && b != nil && a != except && b != except {
			ties[a] = append(ties[a], b)
			ties[b] = append(ties[b], a)
		}
	}
	for _, x := range p.Graph.Edges {
		tie(x.From.Stage, x.To.Stage)
	}
	for _, st := range p.Graph.Stages {
		for _, a := range st.After {
			tie(st, a)
		}
	}
	reached := map[*parser.Stage]bool{from: true}
	stack := []*parser.Stage{from}
	for len(stack) > 0 {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, t := range ties[s] {
			if !reached[t] {
				reached[t] = true
				stack = append(stack, t)
			}
		}
	}
	return reached
}

// upstream is st and every stage whose stream reaches it by data edges.
func (p *Plan) upstream(st *parser.Stage) map[*parser.Stage]bool {
	seen := map[*parser.Stage]bool{st: true}
	stack := []*parser.Stage{st}
	for len(stack) > 0 {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, x := range p.Graph.Edges {
			if x.To.Stage == s && x.From.Stage != nil && !seen[x.From.Stage] {
				seen[x.From.Stage] = true
				stack = append(stack, x.From.Stage)
			}
		}
	}
	return seen
}

// afterClosure is every stage st waits for with after, directly or
// through the stages it waits for.
func afterClosure(st *parser.Stage) map[*parser.Stage]bool {
	seen := map[*parser.Stage]bool{}
	stack := append([]*parser.Stage(nil), st.After...)
	for len(stack) > 0 {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if !seen[s] {
			seen[s] = true
			stack = append(stack, s.After...)
		}
	}
	return seen
}

// branchesMeet reports whether the consumers of a fan-out's edges depend
// on each other downstream: some stage, or ipcflow's stdout or stderr, is
// reached from two of them through data edges or after clauses.
func (p *Plan) branchesMeet(edges []int) bool {
	next := map[string][]string{} // a node and the nodes that read from or wait on it
	for _, e := range p.Graph.Edges {
		if e.From.Stage == nil {
			continue
		}
		to := e.To.Port // stdout or stderr
		if e.To.Stage != nil {
			to = e.To.Stage.Name
		}
		next[e.From.Stage.Name] = append(next[e.From.Stage.Name], to)
	}
	for _, st := range p.Graph.Stages {
		for _, a := range st.After {
			next[a.Name] = append(next[a.Name], st.Name)
		}
	}
	reachedFrom := map[string]int{} // node -> index of the branch that reached it
	for k, i := range edges {
		stack := []string{p.Graph.Edges[i].To.Stage.Name}
		seen := map[string]bool{}
		for len(stack) > 0 {
			n := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen[n] {
				continue
			}
			seen[n] = true
			if other, ok := reachedFrom[n]; ok && other != k {
				return true
			}
			reachedFrom[n] = k
			stack = append(stack, next[n]...)
		}
	}
	return false
}
