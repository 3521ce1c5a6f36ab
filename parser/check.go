package parser

import (
	"path/filepath"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// The checks here look at the whole resolved graph: cycles through data
// and after edges, certain deadlocks on semaphores of count 1, and paths
// claimed by two edges.

// link is one dependency between two stages: a data edge from -> to, or
// `to after from`.
type link struct {
	to    int
	pos   Pos
	after bool
}

// stageLinks builds the adjacency lists of the stage graph, by stage index.
func stageLinks(g *Graph, info map[*Stage]*stageInfo, withAfter bool) [][]link {
	adj := make([][]link, len(g.Stages))
	for _, e := range g.Edges {
		if e.From.Stage == nil || e.To.Stage == nil {
			continue
		}
		f, t := info[e.From.Stage].index, info[e.To.Stage].index
		adj[f] = append(adj[f], link{to: t, pos: e.Pos})
	}
	if withAfter {
		for _, s := range g.Stages {
			si := info[s]
			for i, dep := range s.After {
				d := info[dep].index
				adj[d] = append(adj[d], link{to: si.index, pos: si.afterPos[i], after: true})
			}
		}
	}
	return adj
}

// checkCycles reports one cycle per strongly connected component of the
// stage graph (data and after edges), as `a -> b -> a`, at the position of
// the link that leaves the component's first stage.
func (r *resolver) checkCycles() {
	g := r.g
	adj := stageLinks(g, r.info, true)
	for _, comp := range tarjan(adj) {
		start := comp[0]
		for _, v := range comp {
			if v < start {
				start = v
			}
		}
		if len(comp) == 1 && !hasLinkTo(adj[start], start) {
			continue
		}
		in := make(map[int]bool, len(comp))
		for _, v := range comp {
			in[v] = true
		}
		path, first := cyclePath(adj, start, in)
		names := make([]string, len(path))
		for i, v := range path {
			names[i] = g.Stages[v].Name
		}
		r.errorf(first, "cycle: %s (a stage cannot wait for its own output or its own end)", strings.Join(names, " -> "))
	}
}

func hasLinkTo(ls []link, v int) bool {
	for _, l := range ls {
		if l.to == v {
			return true
		}
	}
	return false
}

// cyclePath finds the shortest cycle through start inside a component by a
// breadth-first search; it returns the stages (start at both ends) and the
// position of the first link.
func cyclePath(adj [][]link, start int, in map[int]bool) ([]int, Pos) {
	parent := map[int]int{}
	via := map[int]Pos{}
	queue := []int{start}
	end := -1
	var endPos Pos
	for len(queue) > 0 && end < 0 {
		v := queue[0]
		queue = queue[1:]
		for _, l := range adj[v] {
			if l.to == start {
				end, endPos = v, l.pos
				break
			}
			if _, seen := parent[l.to]; seen || !in[l.to] {
				continue
			}
			parent[l.to], via[l.to] = v, l.pos
			queue = append(queue, l.to)
		}
	}
	path := []int{start}
	first := endPos
	for v := end; v != start; v = parent[v] {
		path = append(path, v)
		first = via[v]
	}
	path = append(path, start)
	// path is start, then the stages backwards from the end: reverse the
	// middle so it reads in the direction of the links.
	for i, j := 1, len(path)-2; i < j; i, j = i+1, j-1 {
		path[i], path[j] = path[j], path[i]
	}
	return path, first
}

// tarjan returns the strongly connected components of the graph, each in
// no particular order. It is iterative, so a chain of 10,000 stages does not
// grow the goroutine stack.
func tarjan(adj [][]link) [][]int {
	n := len(adj)
	index := make([]int, n)
	low := make([]int, n)
	onStack := make([]bool, n)
	for i := range index {
		index[i] = -1
	}
	var stack []int
	var comps [][]int
	next := 0
	type frame struct{ v, i int }
	for root := 0; root < n; root++ {
		if index[root] >= 0 {
			continue
		}
		call := []frame{{root, 0}}
		index[root], low[root] = next, next
		next++
		stack = append(stack, root)
		onStack[root] = true
		for len(call) > 0 {
			f := &call[len(call)-1]
			if f.i < len(adj[f.v]) {
				w := adj[f.v][f.i].to
				f.i++
				if index[w] < 0 {
					index[w], low[w] = next, next
					next++
					stack = append(stack, w)
					onStack[w] = true
					call = append(call, frame{w, 0})
				} else if onStack[w] && index[w] < low[f.v] {
					low[f.v] = index[w]
				}
				continue
			}
			v := f.v
			call = call[:len(call)-1]
			if len(call) > 0 {
				u := call[len(call)-1].v
				low[u] = min(low[u], low[v])
			}
			if low[v] == index[v] {
				var comp []int
				for {
					w := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					onStack[w] = false
					comp = append(comp, w)
					if w == v {
						break
					}
				}
				comps = append(comps, comp)
			}
		}
	}
	return comps
}

// checkSemDeadlocks reports two stages that both use a semaphore of count
// 1 while one's output reaches the other through data edges: the second
// cannot start before the first ends, and the first cannot end while
// nobody reads what it writes.
func (r *resolver) checkSemDeadlocks() {
	g := r.g
	users := map[*Sem][]*Stage{}
	for _, s := range g.Stages {
		for _, sem := range s.Uses {
			if sem.Count == 1 {
				users[sem] = append(users[sem], s)
			}
		}
	}
	var adj [][]link
	for _, sem := range g.Sems {
		us := users[sem]
		if len(us) < 2 {
			continue
		}
		if adj == nil {
			adj = stageLinks(g, r.info, false)
		}
		isUser := map[int]*Stage{}
		for _, u := range us {
			isUser[r.info[u].index] = u
		}
		for _, u := range us {
			from := r.info[u].index
			parent := map[int]int{from: -1}
			queue := []int{from}
			for len(queue) > 0 {
				v := queue[0]
				queue = queue[1:]
				for _, l := range adj[v] {
					if _, seen := parent[l.to]; seen {
						continue
					}
					parent[l.to] = v
					queue = append(queue, l.to)
					if other := isUser[l.to]; other != nil && other != u {
						var path []string
						for x := l.to; x >= 0; x = parent[x] {
							path = append(path, g.Stages[x].Name)
						}
						for i, j := 0, len(path)-1; i < j; i, j = i+1, j-1 {
							path[i], path[j] = path[j], path[i]
						}
						r.errorf(r.usesPos(other, sem), "certain deadlock: stages %s and %s both use semaphore %s (count 1) and are joined by the data path %s",
							u.Name, other.Name, sem.Name, strings.Join(path, " -> "))
					}
				}
			}
		}
	}
}

// checkSelfLocks reports a stage command that takes with `ipcflow lock` a
// unit of a semaphore of count 1 it already holds: through its `uses`
// clause, or an `ipcflow lock` of the same call around it
// (`ipcflow lock db -- ipcflow lock db -- cmd`). It would wait for
// itself for ever; one given --timeout gives up, and is left alone.
func (r *resolver) checkSelfLocks() {
	for _, st := range r.g.Stages {
		// IPCFLOW_LOCK_TIMEOUT is --timeout's variable: a command that
		// sets it (or exports it) may give up; so may what it inherits,
		// which check cannot see, and is not a certain deadlock either.
		if st.Script == nil || strings.Contains(st.Command, "IPCFLOW_LOCK_TIMEOUT") {
			continue
		}
		syntax.Walk(st.Script, func(n syntax.Node) bool {
			if call, ok := n.(*syntax.CallExpr); ok {
				r.selfLocks(st, call.Args)
			}
			return true
		})
	}
}

// selfLocks checks one command: `ipcflow lock SEM [--timeout D] -- CMD`,
// and again in CMD, which is the command word after `--` (a word of its
// arguments is not).
func (r *resolver) selfLocks(st *Stage, args []*syntax.Word) {
	held := map[*Sem]bool{}
	for _, sem := range st.Uses {
		held[sem] = true
	}
	for len(args) > 2 {
		if p := args[0].Lit(); (p != "ipcflow" && !strings.HasSuffix(p, "/ipcflow")) || args[1].Lit() != "lock" {
			return
		}
		at := args[0]
		name, timeout, rest := "", false, args[2:]
	flags:
		for len(rest) > 0 {
			a := rest[0].Lit()
			rest = rest[1:]
			switch {
			case a == "--":
				break flags
			case a == "--timeout" && len(rest) > 0:
				timeout = !isZeroDuration(rest[0].Lit())
				rest = rest[1:]
			case strings.HasPrefix(a, "--timeout="):
				timeout = !isZeroDuration(strings.TrimPrefix(a, "--timeout="))
			case a == "" || strings.HasPrefix(a, "-"):
				timeout = timeout || a == "" // a word to expand: it may be anything
			case name == "":
				name = a
			}
		}
		if sem := r.sems[name]; sem != nil && sem.Count == 1 && !timeout {
			if held[sem] {
				r.errorf(st.ShellPos(at.Pos()), "certain deadlock: stage %s takes semaphore %s (count 1) with ipcflow lock while it holds its one unit already", st.Name, sem.Name)
				return
			}
			held[sem] = true
		}
		args = rest
	}
}

// isZeroDuration reports whether s is a --timeout of 0, "wait as long as
// it takes".
func isZeroDuration(s string) bool {
	return strings.Trim(s, "0") == "" || strings.Trim(s, "0") == "s" || strings.Trim(s, "0") == "ms"
}

func (r *resolver) usesPos(s *Stage, sem *Sem) Pos {
	info := r.info[s]
	for i, x := range s.Uses {
		if x == sem {
			return info.usesPos[i]
		}
	}
	return s.Pos
}

// checkPaths reports a path= that two edges claim. A FIFO at a path carries
// one edge (two readers would split its bytes), so a fan-out or fan-in
// over `fifo path=` is an error, as is the same path on two edges. The one
// sharing allowed is an mmap fan-out: edges from one producer port with
// the same options are one recording with a cursor per reader.
func (r *resolver) checkPaths() {
	r.errs = append(r.errs, CheckPaths(r.g)...)
}

// CheckPaths is the check of checkPaths over g's edges: run makes it
// again once option values that hold an expansion are expanded.
func CheckPaths(g *Graph) ErrorList {
	r := errorSink{file: g.File}
	first := map[string]*Edge{}
	for _, e := range g.Edges {
		if e.Options.Path == "" || (e.Type != FIFO && e.Type != MMap) {
			continue
		}
		path := filepath.Clean(e.Options.Path)
		f, seen := first[path]
		if !seen {
			first[path] = e
			continue
		}
		if e.Type == MMap && f.Type == MMap && samePort(e.From, f.From) && e.Options == f.Options {
			continue
		}
		why := "a path names one edge's " + map[EdgeType]string{FIFO: "FIFO", MMap: "file"}[e.Type]
		if e.Type == FIFO && f.Type == FIFO && (samePort(e.From, f.From) || samePort(e.To, f.To)) {
			why = "a FIFO at a path carries one edge; fan-out and fan-in over it need a path per edge, or no path"
		}
		r.errorf(e.Pos, "edge %s -> %s: path %s is also the path of edge %s -> %s (at %s): %s", e.From, e.To, e.Options.Path, f.From, f.To, f.Pos, why)
	}
	return r.errs
}

func samePort(a, b Endpoint) bool { return a.Stage == b.Stage && a.Port == b.Port }
