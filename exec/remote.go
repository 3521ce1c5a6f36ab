package exec

// Remote stages (SPEC 13): a stage written `on HOST` is started through
// the same seam as any stage, with its planned fd table, but its process
// here is the stand-in (package remote's role "remote"), which runs the
// command on HOST over ssh and ends as the remote command ended. So
// supervision, exit status, signals and teardown are the local ones;
// newFlow opens the hosts' connections before any stage starts
// (connectHosts) and teardown closes them.

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ipcflow/ipcflow/parser"
	"github.com/ipcflow/ipcflow/remote"
	"github.com/ipcflow/ipcflow/stats"
	"golang.org/x/sys/unix"
	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"
)

// remoteRole is the role "remote": the stand-in of a remote stage. It
// dies of the signal that killed the stage on its host, as the stage
// shell does for a local one.
func remoteRole(args []string) int {
	code, sig := remote.StandIn(args)
	if sig != 0 {
		dieOf(sig)
	}
	return code
}

// remoteProcess builds the process of remote stage sp: its host and the
// command it runs there, its stand-in here. env is the stage's
// environment as a local stage would have it.
func (p *Plan) remoteProcess(sp *StagePlan, names FlowNames, pr *Process, env []string) (*Process, error) {
	st := sp.Stage
	host, err := assignValue(env, st.Host)
	if err != nil {
		return nil, usagef("stage %s: on: %v", st.Name, err)
	}
	if host == "" || host[0] == '-' {
		// A word starting with '-' would be an option to ssh.
		return nil, usagef("stage %s: on %s: %q is not a host", st.Name, st.HostText, host)
	}
	if st.Dir != nil {
		if pr.Dir, err = assignValue(env, st.Dir); err != nil {
			return nil, usagef("stage %s: dir: %v", st.Name, err)
		}
	}
	if len(st.Command) > argvCommandMax {
		return nil, usagef("stage %s: a command of %d bytes is too long for a remote stage (at most %d)", st.Name, len(st.Command), argvCommandMax)
	}
	spec := &remote.Spec{Stage: st.Name, Host: host, RunDir: names.Dir, Dir: pr.Dir}
	// What the host's stage sees beyond its own session's environment:
	// the script's params and envs, and its ports. ipcflow's own
	// environment stays here: PATH, HOME and the like are the host's.
	for _, v := range p.Params {
		spec.Env = append(spec.Env, v.Name+"="+v.Value)
	}
	for _, v := range p.Envs {
		spec.Env = append(spec.Env, v.Name+"="+v.Value)
	}
	for _, port := range sp.Ports {
		spec.Env = append(spec.Env, port.Name+"=/dev/fd/"+strconv.Itoa(port.Fd))
	}
	if args := literalArgs(st.Script); args != nil {
		// One program and literal words, run as they are, as a local
		// stage's (directArgs) and as `bash -c` would exec it: its exit
		// status and its death by a signal are the stage's own, where
		// the stage shell would say 128+N, and would take an exit 141
		// for SIGPIPE's. The host looks the program up on its PATH.
		spec.Argv = args
	} else if need := parser.NeedsBash(st.Script); need != nil {
		pr.Bash, spec.Argv = need, []string{"bash", "-c", st.Command}
	} else {
		_, argv, err := shellCommand(st.Name+" on "+host, len(sp.Fds), st.Command)
		if err != nil {
			return nil, err
		}
		pr.Shell, spec.Argv, spec.Self = true, append([]string{"ipcflow"}, argv[1:]...), true
	}
	for _, e := range sp.Fds {
		port := remote.Port{Write: e.Kind == EndWrite || e.isOwn(1) || e.isOwn(2), Null: e.Kind == EndNull, Type: "pipe"}
		if e.Kind == EndWrite || e.Kind == EndRead {
			port.Type, port.Options = p.Wires[e.Wire].Spec.Type, p.Wires[e.Wire].Spec.Options
			if peer, fd, ok := p.hostPipe(sp, e, host, env); ok {
				port.Local = true
				if e.Kind == EndRead {
					port.HandTo, port.HandFd = peer, fd
				}
			}
		}
		spec.Ports = append(spec.Ports, port)
	}
	pr.Host, pr.Remote = host, spec
	pr.Env = dedupEnv(env)
	pr.Path, pr.Argv, err = internalCommand("remote", spec.Encode())
	return pr, err
}

// literalArgs returns the argv of a command that is one simple command
// of literal words naming a program (not a builtin, a keyword or a
// function), or nil. Unlike directArgs it expands nothing: a variable,
// a glob or a ~ means what the host's shell makes of it, not this
// host's.
func literalArgs(f *syntax.File) []string {
	call := simpleCall(f)
	if call == nil {
		return nil
	}
	var args []string
	for _, w := range call.Args {
		for _, part := range w.Parts {
			// A glob or a brace, even escaped: the host's shell decides.
			if lit, ok := part.(*syntax.Lit); ok && strings.ContainsAny(lit.Value, "*?[]{}") {
				return nil
			}
		}
		a, ok := parser.LiteralWord(w)
		if !ok {
			return nil
		}
		args = append(args, a)
	}
	if isKeyword(args[0]) || interp.IsBuiltin(args[0]) {
		return nil
	}
	return args
}

// hostPipe reports whether end e of remote stage sp on host is one end of
// a one-to-one pipe or fifo edge whose other end is a stage on the same
// host, and names that stage and its fd: such an edge stays on the host
// (remote.Port's Local), rather than going to ipcflow's host and back.
// env expands the other stage's host as sp's was.
func (p *Plan) hostPipe(sp *StagePlan, e End, host string, env []string) (peer string, fd int, ok bool) {
	w := p.Wires[e.Wire]
	if w.Internal() || w.Spec.Type != "pipe" && w.Spec.Type != "fifo" || w.Spec.Readers != 1 {
		return "", 0, false
	}
	for _, m := range p.Movers {
		for _, me := range append(slices.Clip(m.Srcs), m.Dsts...) {
			if (me.Kind == EndWrite || me.Kind == EndRead) && me.Wire == e.Wire {
				return "", 0, false
			}
		}
	}
	other := EndRead
	if e.Kind == EndRead {
		other = EndWrite
	}
	var found *StagePlan
	for _, se := range p.stageEndsOn(e.Wire) {
		if se.sp == sp && se.end == e {
			continue
		}
		if se.end.Kind != other || found != nil {
			return "", 0, false // more than one other end
		}
		found, fd = se.sp, se.fd
	}
	if found == nil || found == sp || found.Stage.Host == nil {
		return "", 0, false
	}
	h, err := assignValue(env, found.Stage.Host)
	if err != nil || h != host {
		return "", 0, false
	}
	return found.Stage.Name, fd, true
}

// remoteFigures reads, for the Recorder's samples, the figures of a
// remote stage's process on its host that its stand-in keeps
// (remote.Figures): its own /proc here would show only the stand-in's.
func remoteFigures(spec *remote.Spec) func() (stats.IO, time.Duration, time.Duration, bool) {
	path := remote.FiguresPath(spec.RunDir, spec.Stage)
	return func() (stats.IO, time.Duration, time.Duration, bool) {
		f, ok := remote.ReadFigures(path)
		return stats.IO{Read: f.Read, Written: f.Written, OK: ok}, time.Duration(f.UserUs) * time.Microsecond, time.Duration(f.SysUs) * time.Microsecond, ok
	}
}

// takeRemoteFigures puts in an ended remote stage's io and rusage what
// its process on the host used, as its stand-in last heard: reaping the
// stand-in gave the stand-in's own. A stand-in that heard nothing (the
// connection went) leaves them as they are.
func takeRemoteFigures(st *liveStage) {
	if st.proc == nil || st.proc.Remote == nil {
		return
	}
	f, ok := remote.ReadFigures(remote.FiguresPath(st.proc.Remote.RunDir, st.proc.Remote.Stage))
	if !ok {
		return
	}
	st.io = stats.IO{Read: f.Read, Written: f.Written, OK: true}
	st.rusage.Utime = unix.NsecToTimeval(f.UserUs * 1000)
	st.rusage.Stime = unix.NsecToTimeval(f.SysUs * 1000)
	if f.MaxRSSKiB > 0 {
		st.rusage.Maxrss = f.MaxRSSKiB
	}
}

// hosts lists the hosts of procs, each once, in the order of the stages.
func hosts(procs []*Process) []string {
	var hs []string
	for _, pr := range procs {
		if pr.Host != "" && !slices.Contains(hs, pr.Host) {
			hs = append(hs, pr.Host)
		}
	}
	return hs
}

// connectHosts opens the connections to the flow's hosts, before any
// stage starts: a host that can't be reached is one line per host, and
// the run's usual setup failure.
func (f *flow) connectHosts() error {
	hs := hosts(f.procs())
	if len(hs) == 0 {
		return nil
	}
	h, err := remote.Connect(hs, f.rd.Path, f.rd.Record)
	if err != nil {
		return err
	}
	f.hosts = h
	return nil
}

func (f *flow) procs() []*Process {
	procs := make([]*Process, len(f.stages))
	for i, st := range f.stages {
		procs[i] = st.proc
	}
	return procs
}

// title is how messages name a stage: its name, and its host when it
// has one ("stage x on h2: exit status 1").
func (st *liveStage) title() string {
	if st.proc != nil && st.proc.Host != "" {
		return st.name() + " on " + st.proc.Host
	}
	return st.name()
}
