package parser

import (
	"fmt"
	"sort"
	"strings"
)

// resolver turns an AST into a Graph: it binds every name to what it
// declares, turns option words into values and expands edge chains and
// groups into single edges.
type resolver struct {
	errorSink
	g      *Graph
	decls  map[string]decl // the one namespace of stages, params, envs, sems
	stages map[string]*Stage
	sems   map[string]*Sem
	vars   map[string]decl // params and envs, which stage ports must not hide
	info   map[*Stage]*stageInfo
	// mentioned holds the declared ports that some edge names, even one
	// with an error of its own: the others are reported as unconnected.
	mentioned map[*Port]bool
	// suggest holds, per kind, the declared names to suggest from: built
	// at the first unknown name of the kind, not at every one.
	suggest map[string]*suggester
	// replicaRefs are the stages whose replica count names a param.
	replicaRefs []replicaRef
}

// decl records what a name declares, for duplicate and wrong-kind errors.
type decl struct {
	kind string // "stage", "param", "env", "sem"
	pos  Pos
}

// stageInfo keeps positions the Graph does not hold, for later checks.
type stageInfo struct {
	index    int
	usesPos  []Pos // parallel to Stage.Uses
	afterPos []Pos // parallel to Stage.After
}

// reservedNames are ipcflow's own streams and the implicit port names.
var reservedNames = map[string]bool{
	Stdin: true, Stdout: true, Stderr: true, "in": true, "out": true, "err": true,
}

// resolve checks f and builds its Graph. partial says f lacks statements
// that had syntax errors: then a port may look unconnected only because
// its edge was on a broken line, and that is not reported.
func resolve(f *File, partial bool) (*Graph, ErrorList) {
	r := &resolver{
		errorSink: errorSink{file: f.Name},
		g:         &Graph{File: f.Name},
		decls:     map[string]decl{},
		stages:    map[string]*Stage{},
		sems:      map[string]*Sem{},
		vars:      map[string]decl{},
		info:      map[*Stage]*stageInfo{},
		suggest:   map[string]*suggester{},
		mentioned: map[*Port]bool{},
	}
	var stageDecls []*StageDecl
	declaresStage := false
	for _, s := range f.Stmts {
		switch d := s.(type) {
		case *VarDecl:
			r.varDecl(d)
		case *SemDecl:
			r.semDecl(d)
		case *StageDecl:
			declaresStage = true
			if st := r.stageDecl(d); st != nil {
				stageDecls = append(stageDecls, d)
			}
		}
	}
	// Clauses refer to stages and sems declared anywhere in the file.
	for _, d := range stageDecls {
		r.clauses(r.stages[d.Name.Name], d)
	}
	for _, d := range stageDecls {
		r.restartAfter(r.stages[d.Name.Name])
	}
	r.replicaParams()
	edgeAt := map[[2]string]Pos{}
	for _, s := range f.Stmts {
		if e, ok := s.(*EdgeStmt); ok {
			r.edgeStmt(e, edgeAt)
		}
	}
	if !partial {
		r.checkPortsConnected()
		if !declaresStage {
			// An empty file, or params alone: nothing would run, and
			// a run that does nothing successfully hides the mistake
			// (the wrong file, a generator that wrote nothing).
			r.errorf(Pos{Line: 1, Col: 1}, "the script declares no stage; a flow needs at least one (stage NAME = COMMAND)")
		}
	}
	r.checkCycles()
	r.checkSemDeadlocks()
	r.checkSelfLocks()
	r.checkPaths()
	return r.g, r.errs
}

// declare claims name for a declaration of kind, reporting reserved and
// duplicate names. It returns false when the name cannot be used.
func (r *resolver) declare(id Ident, kind string) bool {
	if reservedNames[id.Name] {
		r.errorf(id.Pos, "%s is a reserved name; it cannot name a %s", id.Name, kind)
		return false
	}
	if prev, dup := r.decls[id.Name]; dup {
		r.errorf(id.Pos, "%s redeclared: already declared as %s at %s", id.Name, article(prev.kind), prev.pos)
		return false
	}
	r.decls[id.Name] = decl{kind: kind, pos: id.Pos}
	clear(r.suggest) // a list built before now lacks the name
	return true
}

func article(kind string) string {
	switch kind {
	case "env":
		return "an env"
	case "sem":
		return "a semaphore"
	}
	return "a " + kind
}

func (r *resolver) varDecl(d *VarDecl) {
	if !r.declare(d.Name, d.Kind) {
		return
	}
	r.vars[d.Name.Name] = decl{kind: d.Kind, pos: d.Name.Pos}
	if d.Kind == "param" {
		r.g.Params = append(r.g.Params, &Param{Name: d.Name.Name, Value: d.Value, Text: d.Text, Pos: d.Keyword})
	} else {
		r.g.Envs = append(r.g.Envs, &Env{Name: d.Name.Name, Value: d.Value, Text: d.Text, Pos: d.Keyword})
	}
}

// MaxSemName is the longest semaphore name: the name becomes part of a
// POSIX semaphore's (/dev/shm/sem.ipcflow.RUNID.NAME, at most NAME_MAX =
// 255 bytes with a 16-character run id), and that must fail here, not
// when the run creates it.
const MaxSemName = 200

func (r *resolver) semDecl(d *SemDecl) {
	ok := r.declare(d.Name, "sem")
	if ok && len(d.Name.Name) > MaxSemName {
		r.errorf(d.Name.Pos, "semaphore name %s... is %d characters long; at most %d fit in a POSIX semaphore name", d.Name.Name[:20], len(d.Name.Name), MaxSemName)
	}
	if ok {
		// Stages find a semaphore by IPCFLOW_SEM_<NAME upper-cased>
		// (SPEC 8): two names that differ only in case would share it.
		env := "IPCFLOW_SEM_" + strings.ToUpper(d.Name.Name)
		for _, o := range r.g.Sems {
			if strings.EqualFold(o.Name, d.Name.Name) {
				r.errorf(d.Name.Pos, "semaphores %s and %s (declared at %s) would both be %s; semaphore names must differ in more than case", d.Name.Name, o.Name, r.decls[o.Name].pos, env)
				break
			}
		}
	}
	n := 1
	if d.Count != "" {
		var err error
		if n, err = parseCount(d.Count, "semaphore count", 1, 1024); err != nil {
			r.errorf(d.CountPos, "%v", err)
		}
	}
	if ok {
		s := &Sem{Name: d.Name.Name, Count: n, Pos: d.Keyword}
		r.sems[s.Name] = s
		r.g.Sems = append(r.g.Sems, s)
	}
}

func (r *resolver) stageDecl(d *StageDecl) *Stage {
	if !r.declare(d.Name, "stage") {
		return nil
	}
	st := &Stage{
		Name:       d.Name.Name,
		Pos:        d.Keyword,
		Replicas:   1,
		Command:    d.Command,
		CommandPos: d.CommandPos,
		Script:     d.Script,
	}
	if d.Replicas != "" {
		r.replicas(st, d)
	}
	for _, pd := range d.Ports {
		name := pd.Name.Name
		switch {
		case reservedNames[name]:
			r.errorf(pd.Name.Pos, "%s is a reserved name; it cannot name a port (every stage has in, out and err)", name)
			continue
		case st.Port(name) != nil:
			r.errorf(pd.Name.Pos, "port %s declared twice in stage %s", name, st.Name)
			continue
		}
		st.Ports = append(st.Ports, &Port{Name: name, Dir: pd.Dir, Pos: pd.Pos})
	}
	r.stages[st.Name] = st
	r.info[st] = &stageInfo{index: len(r.g.Stages)}
	r.g.Stages = append(r.g.Stages, st)
	return st
}

// portsHideVars reports ports whose shell variable would hide a param or
// env of the same name inside the stage's command.
func (r *resolver) portsHideVars(st *Stage) {
	for _, p := range st.Ports {
		if v, ok := r.vars[p.Name]; ok {
			r.errorf(p.Pos, "port %s of stage %s has the name of the %s declared at %s; both would be the shell variable $%s", p.Name, st.Name, v.kind, v.pos, p.Name)
		}
	}
}

// clauses resolves uses, after, dir and native.
func (r *resolver) clauses(st *Stage, d *StageDecl) {
	r.portsHideVars(st)
	info := r.info[st]
	var dirSeen, onSeen, nativeSeen bool
	for _, c := range d.Clauses {
		switch c.Kind {
		case "uses":
			for _, id := range c.Names {
				sem := r.lookupSem(id)
				if sem == nil {
					continue
				}
				if i := indexSem(st.Uses, sem); i >= 0 {
					r.errorf(id.Pos, "stage %s uses semaphore %s twice (first at %s)", st.Name, sem.Name, info.usesPos[i])
					continue
				}
				st.Uses = append(st.Uses, sem)
				info.usesPos = append(info.usesPos, id.Pos)
			}
		case "after":
			for _, id := range c.Names {
				dep := r.lookupStage(id)
				if dep == nil {
					continue
				}
				if i := indexStage(st.After, dep); i >= 0 {
					r.errorf(id.Pos, "stage %s is after %s twice (first at %s)", st.Name, dep.Name, info.afterPos[i])
					continue
				}
				st.After = append(st.After, dep)
				info.afterPos = append(info.afterPos, id.Pos)
			}
		case "dir":
			if dirSeen {
				r.errorf(c.Pos, "dir given twice for stage %s", st.Name)
				continue
			}
			dirSeen = true
			st.Dir, st.DirText = c.Word, c.Text
		case "on":
			if onSeen {
				r.errorf(c.Pos, "on given twice for stage %s", st.Name)
				continue
			}
			onSeen = true
			st.Host, st.HostText, st.HostPos = c.Word, c.Text, c.WordPos
		case "unordered":
			if st.Unordered {
				r.errorf(c.Pos, "unordered given twice for stage %s", st.Name)
			}
			st.Unordered = true
			if !st.Replicated() {
				r.errorf(c.Pos, "stage %s: unordered needs replicas (stage %s[N])", st.Name, st.Name)
			}
		case "merge":
			if st.Merge != nil || st.MergeText != "" {
				r.errorf(c.Pos, "merge given twice for stage %s", st.Name)
				continue
			}
			st.Merge, st.MergeText, st.MergePos = c.Word, c.Text, c.WordPos
			if !st.Replicated() {
				r.errorf(c.Pos, "stage %s: merge needs replicas (stage %s[N])", st.Name, st.Name)
			}
		case "restart":
			r.restartPolicy(st, c)
		case "limit":
			r.limits(st, c)
		case "native":
			if nativeSeen {
				r.errorf(c.Pos, "native given twice for stage %s", st.Name)
			}
			nativeSeen = true
			st.Native = true
		}
	}
	if st.Host != nil && st.Native {
		r.errorf(st.HostPos, "stage %s: a native stage cannot run on another host yet (its ports' objects are this machine's)", st.Name)
	}
	if st.Host != nil && st.Replicated() {
		r.errorf(st.HostPos, "stage %s: replicas on another host are not supported yet", st.Name)
	}
	if st.Native && st.Restart != nil {
		r.errorf(st.Restart.Pos, "stage %s: restart: a native stage talks to its ports' objects itself, so ipcflow cannot hold them for the next copy", st.Name)
	}
	if st.Host != nil && st.Limits != nil {
		r.errorf(st.Limits.Pos, "stage %s: limits are set on this machine; a stage on another host (on %s) cannot have them yet", st.Name, st.HostText)
	}
	if st.Host != nil && st.Restart != nil {
		// A restart keeps the edges' unread bytes for the next copy, but
		// a remote stage's ssh sessions read its input far ahead of it
		// (a channel window, pipes on the host): a copy's end loses all
		// that, so the next copy would miss the middle of its input.
		r.errorf(st.Restart.Pos, "stage %s: a stage on another host (on %s) cannot restart yet: its ssh sessions read its input ahead of it, and a copy's end would lose what they hold", st.Name, st.HostText)
	}
	if st.Unordered && st.MergeText != "" {
		r.errorf(st.MergePos, "stage %s: merge and unordered exclude each other (merge gives each block to whichever copy is free already)", st.Name)
	}
}

// replicas resolves N of stage NAME[N]: a count from 1 to 1024, auto, or
// $NAME / ${NAME} of a declared param (checked once every param is known,
// in replicaParams).
func (r *resolver) replicas(st *Stage, d *StageDecl) {
	st.ReplicasText = d.Replicas
	st.Replicas = 0
	text := d.Replicas
	switch {
	case text == "auto":
		st.ReplicasAuto = true
	case strings.HasPrefix(text, "$"):
		name := strings.TrimPrefix(text, "$")
		if strings.HasPrefix(name, "{") && strings.HasSuffix(name, "}") {
			name = name[1 : len(name)-1]
		}
		if !validName(name) {
			r.errorf(d.ReplicasPos, "bad replica count %s: want a number, $PARAM or auto", text)
			st.Replicas = 1
			return
		}
		st.ReplicasParam = name
		r.replicaRefs = append(r.replicaRefs, replicaRef{st, d.ReplicasPos})
	default:
		n, err := parseCount(text, "replica count", 1, 1024)
		if err != nil {
			r.errorf(d.ReplicasPos, "%v (or $PARAM, or auto)", err)
			n = 1
		}
		st.Replicas = n
	}
}

// replicaRef is a stage whose replica count names a param.
type replicaRef struct {
	st  *Stage
	pos Pos
}

// replicaParams checks that each [$NAME] names a declared param.
func (r *resolver) replicaParams() {
	for _, ref := range r.replicaRefs {
		name := ref.st.ReplicasParam
		switch d, ok := r.decls[name]; {
		case !ok:
			r.errorf(ref.pos, "unknown param %s in the replica count of stage %s%s", name, ref.st.Name, r.didYouMean(name, "param"))
		case d.kind != "param":
			r.errorf(ref.pos, "%s is %s (declared at %s), not a param: the replica count of stage %s", name, article(d.kind), d.pos, ref.st.Name)
		}
	}
}

func indexSem(list []*Sem, s *Sem) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

func indexStage(list []*Stage, s *Stage) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// lookupSem finds a semaphore, or reports an unknown or wrong-kind name.
func (r *resolver) lookupSem(id Ident) *Sem {
	if s := r.sems[id.Name]; s != nil {
		return s
	}
	if d, ok := r.decls[id.Name]; ok {
		r.errorf(id.Pos, "%s is %s (declared at %s), not a semaphore", id.Name, article(d.kind), d.pos)
		return nil
	}
	r.errorf(id.Pos, "unknown semaphore %s%s", id.Name, r.didYouMean(id.Name, "sem"))
	return nil
}

// lookupStage finds a stage, or reports an unknown or wrong-kind name.
// streams are those of ipcflow's own streams that may stand where the
// name is (an edge's end): a misspelt one is suggested too.
func (r *resolver) lookupStage(id Ident, streams ...string) *Stage {
	if s := r.stages[id.Name]; s != nil {
		return s
	}
	if d, ok := r.decls[id.Name]; ok {
		r.errorf(id.Pos, "%s is %s (declared at %s), not a stage", id.Name, article(d.kind), d.pos)
		return nil
	}
	r.errorf(id.Pos, "unknown stage %s%s", id.Name, r.didYouMean(id.Name, "stage", streams...))
	return nil
}

// didYouMean suggests the declared name of kind, or the extra name,
// closest to the unknown name. The names are listed once per kind and
// extras, and only the first maxSearches different unknown names of
// each list are searched for.
func (r *resolver) didYouMean(name, kind string, extra ...string) string {
	key := strings.Join(append([]string{kind}, extra...), " ")
	s := r.suggest[key]
	if s == nil {
		s = newSuggester(append(r.names(kind), extra...), maxSearches)
		r.suggest[key] = s
	}
	return s.suggest(name)
}

// names lists the declared names of one kind, sorted.
func (r *resolver) names(kind string) []string {
	var out []string
	for n, d := range r.decls {
		if d.kind == kind {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// edgeStmt expands a chain into edges: each arrow joins every end on its
// left to every end on its right.
func (r *resolver) edgeStmt(s *EdgeStmt, edgeAt map[[2]string]Pos) {
	for i, a := range s.Arrows {
		if i+1 >= len(s.Ends) {
			break
		}
		t, ok := r.edgeType(a)
		var opts Options
		var later []OptionWord
		if ok {
			opts, later = r.options(t, a)
		}
		froms := r.endpoints(s.Ends[i], true)
		tos := r.endpoints(s.Ends[i+1], false)
		if !ok {
			continue
		}
		for _, from := range froms {
			for _, to := range tos {
				if from.Stage == nil && to.Stage == nil {
					r.errorf(a.Pos, "edge %s -> %s joins no stage", from, to)
					continue
				}
				key := [2]string{from.String(), to.String()}
				if p, dup := edgeAt[key]; dup {
					r.errorf(a.Pos, "duplicate edge %s -> %s (first at %s)", from, to, p)
					continue
				}
				edgeAt[key] = a.Pos
				r.g.Edges = append(r.g.Edges, &Edge{From: from, To: to, Type: t, Options: opts, Unexpanded: later, Pos: a.Pos})
			}
		}
	}
}

// endpoints resolves the ends of one side of an arrow; left is the
// producing side. Ends that cannot be resolved are reported and left out.
func (r *resolver) endpoints(e *Ends, left bool) []Endpoint {
	out := make([]Endpoint, 0, len(e.List))
	for _, ref := range e.List {
		if ep, ok := r.endpoint(ref, left); ok {
			out = append(out, ep)
		}
	}
	return out
}

func (r *resolver) endpoint(ref *EndRef, left bool) (Endpoint, bool) {
	name := ref.Stage.Name
	pos := ref.Stage.Pos
	switch name {
	case Stdin, Stdout, Stderr:
		if ref.Port != nil {
			r.errorf(ref.Port.Pos, "%s has no ports", name)
			return Endpoint{}, false
		}
		if name == Stdin && !left {
			r.errorf(pos, "stdin can only be on the left of an arrow (it is ipcflow's input)")
			return Endpoint{}, false
		}
		if name != Stdin && left {
			r.errorf(pos, "%s can only be on the right of an arrow (it is ipcflow's output)", name)
			return Endpoint{}, false
		}
		return Endpoint{Port: name, Pos: pos}, true
	}
	// A misspelt stream is suggested on either side: stdot on the left
	// is stdout on the wrong side (an error of its own), not stdin.
	st := r.lookupStage(ref.Stage, Stdin, Stdout, Stderr)
	if st == nil {
		return Endpoint{}, false
	}
	if ref.Port == nil {
		port := "in"
		if left {
			port = "out"
		}
		return Endpoint{Stage: st, Port: port, Pos: pos}, true
	}
	pname, ppos := ref.Port.Name, ref.Port.Pos
	var dir Direction
	switch pname {
	case "in":
		dir = In
	case "out", "err":
		dir = Out
	default:
		p := st.Port(pname)
		if p == nil {
			// Every port is listed; only those that may stand on this
			// side of the arrow are suggested.
			cands := []string{"in", "out", "err"}
			fit := []string{"in"}
			if left {
				fit = []string{"out", "err"}
			}
			for _, p := range st.Ports {
				cands = append(cands, p.Name)
				if (p.Dir == Out) == left {
					fit = append(fit, p.Name)
				}
			}
			near, msg := Closest(pname, fit), ""
			if near != "" {
				msg = fmt.Sprintf(" (did you mean %q?)", near)
				// The misspelt port is the one meant: it is not
				// also reported as unconnected.
				if p := st.Port(near); p != nil {
					r.mentioned[p] = true
				}
			}
			r.errorf(ppos, "stage %s has no port %s%s; its ports are %s", st.Name, pname, msg, strings.Join(cands, ", "))
			return Endpoint{}, false
		}
		dir = p.Dir
		r.mentioned[p] = true
	}
	if left && dir == In {
		r.errorf(ppos, "%s.%s is an input port; it cannot be on the left of an arrow", st.Name, pname)
		return Endpoint{}, false
	}
	if !left && dir == Out {
		r.errorf(ppos, "%s.%s is an output port; it cannot be on the right of an arrow", st.Name, pname)
		return Endpoint{}, false
	}
	return Endpoint{Stage: st, Port: pname, Pos: pos}, true
}

// checkPortsConnected reports declared ports that no edge names (SPEC 5):
// a forgotten edge would make the command read nothing, or write into
// nothing, without a word. The implicit in, out and err have defaults.
func (r *resolver) checkPortsConnected() {
	for _, st := range r.g.Stages {
		for _, p := range st.Ports {
			switch {
			case r.mentioned[p]:
			case p.Dir == In:
				r.errorf(p.Pos, "port %s.%s is declared but no edge goes into it (the command would read nothing from $%s)", st.Name, p.Name, p.Name)
			default:
				r.errorf(p.Pos, "port %s.%s is declared but no edge comes out of it (what the command writes to $%s would be lost)", st.Name, p.Name, p.Name)
			}
		}
	}
}

// Param returns the param called name, or nil.
func (g *Graph) Param(name string) *Param {
	for _, p := range g.Params {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Stage returns the stage called name, or nil.
func (g *Graph) Stage(name string) *Stage {
	for _, s := range g.Stages {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// CheckOverrides checks command-line NAME=VALUE arguments against the
// declared params and returns them as a map. An undeclared NAME is an error
// (with the closest declared name suggested), as is an argument that is not
// NAME=VALUE.
func (g *Graph) CheckOverrides(args []string) (map[string]string, error) {
	var names []string
	for _, p := range g.Params {
		names = append(names, p.Name)
	}
	return CheckOverrides(g.File, names, args)
}

// CheckOverrides checks NAME=VALUE arguments against the names of the
// params that the script file declares (what Graph.CheckOverrides does,
// for a script with errors, which has no Graph). The error has one line
// per bad argument.
func CheckOverrides(file string, params, args []string) (map[string]string, error) {
	out := make(map[string]string, len(args))
	declared := make(map[string]bool, len(params))
	for _, p := range params {
		declared[p] = true
	}
	var msgs []string
	for _, a := range args {
		name, value, ok := strings.Cut(a, "=")
		if !ok || !validName(name) {
			msgs = append(msgs, fmt.Sprintf("bad argument %q: expected NAME=VALUE", a))
			continue
		}
		if !declared[name] {
			msgs = append(msgs, fmt.Sprintf("%s=%s: %s declares no param %s%s", name, value, file, name, didYouMean(name, params)))
			continue
		}
		out[name] = value
	}
	if len(msgs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(msgs, "\n"))
	}
	return out, nil
}

// Params lists the names of the params that f declares, in order.
func (f *File) Params() []string {
	var names []string
	for _, s := range f.Stmts {
		if d, ok := s.(*VarDecl); ok && d.Kind == "param" {
			names = append(names, d.Name.Name)
		}
	}
	return names
}

func validName(s string) bool {
	if s == "" || isDigit(s[0]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isLetter(s[i]) && !isDigit(s[i]) {
			return false
		}
	}
	return true
}
