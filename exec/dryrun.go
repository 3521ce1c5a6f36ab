package exec

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"

	"mvdan.cc/sh/v3/syntax"

	"github.com/ipcflow/ipcflow/native"
	"github.com/ipcflow/ipcflow/parser"
)

// Print writes the plan for --dry-run: the objects, the movers, and for
// each process its command, directory, environment additions and fds.
// procs are what (*Plan).Process built, as the real start would.
func (p *Plan) Print(w io.Writer, procs []*Process) {
	fmt.Fprintf(w, "flow %s\n", p.Graph.File)
	for _, v := range p.Params {
		fmt.Fprintf(w, "param %s=%s\n", v.Name, quoteArgs([]string{v.Value}))
	}
	for _, v := range p.Envs {
		fmt.Fprintf(w, "env %s=%s\n", v.Name, quoteArgs([]string{v.Value}))
	}
	if len(p.Wires)+len(p.Graph.Sems) > 0 {
		fmt.Fprintln(w, "\nobjects:")
	}
	for _, s := range p.Graph.Sems {
		fmt.Fprintf(w, "  sem   %-6s count %d, /ipcflow.RUNID.%s%s\n", s.Name, s.Count, s.Name, semUsers(p, s))
	}
	for _, wr := range p.Wires {
		fmt.Fprintf(w, "  %-5s %-6s %s%s\n", wr.ID, wr.Spec.Type, wr.Purpose, options(wr))
	}
	if len(p.Movers) > 0 {
		fmt.Fprintln(w, "\nmovers (in ipcflow):")
	}
	for _, m := range p.Movers {
		kind := [...]string{"tee", "join", "label"}[m.Kind]
		if m.ReadAhead {
			kind = "tee (reads ahead)"
		}
		fmt.Fprintf(w, "  %-5s %s -> %s  (%s)\n", kind, ends(p, m.Srcs), ends(p, m.Dsts), m.Purpose)
	}
	fmt.Fprintf(w, "\nprocesses (held by %s):\n", p.containment())
	for i, sp := range p.Stages {
		pr := procs[i]
		st := sp.Stage
		if pr.Host != "" {
			fmt.Fprintf(w, "  %s on %s: over ssh (a stand-in here; each fd a session, its edge's type made again there)\n", st.Name, pr.Host)
			for fd, port := range pr.Remote.Ports {
				if port.Local && port.HandTo != "" {
					fmt.Fprintf(w, "      fd %d: %s stays on %s: a pipe there from %s, no session\n", fd, sp.Fds[fd].describe(p), pr.Host, port.HandTo)
				}
			}
		}
		switch {
		case pr.Remote != nil && pr.Bash == nil && !pr.Remote.Self:
			fmt.Fprintf(w, "  %s: exec on %s (found on its PATH): %s\n", st.Name, pr.Host, quoteArgs(pr.Remote.Argv))
		case pr.Replicas != nil:
			for _, l := range describeReplicas(st.Name, pr, st.Command) {
				fmt.Fprintln(w, l)
			}
		case pr.Bash != nil:
			fmt.Fprintf(w, "  %s: bash (needs bash: %s at %s): %s\n", st.Name, pr.Bash.What, st.ShellPos(pr.Bash.Pos), oneLine(st.Command))
		case pr.Shell:
			fmt.Fprintf(w, "  %s: stage shell: %s\n", st.Name, oneLine(st.Command))
		case pr.NotFound:
			fmt.Fprintf(w, "  %s: exec %s (not found: the stage will fail with 127)\n", st.Name, quoteArgs(pr.Argv))
		default:
			fmt.Fprintf(w, "  %s: exec %s: %s\n", st.Name, pr.Path, quoteArgs(pr.Argv))
		}
		if pr.ScriptFile != "" {
			fmt.Fprintf(w, "      command in %s (%d bytes: too long for an argument)\n", pr.ScriptFile, len(st.Command))
		}
		if len(st.After) > 0 {
			var names []string
			for _, a := range st.After {
				names = append(names, a.Name)
			}
			fmt.Fprintf(w, "      after %s\n", strings.Join(names, ", "))
		}
		if len(st.Uses) > 0 {
			fmt.Fprintf(w, "      uses %s (taken in this order)\n", strings.Join(sortedUses(sp), ", "))
		}
		if pr.Dir != "" {
			fmt.Fprintf(w, "      dir %s\n", pr.Dir)
		}
		printLimits(w, sp)
		for fd, e := range pr.Fds {
			what := ""
			switch {
			case fd == 0:
				what = "in"
			case fd == 1:
				what = "out"
			case fd == 2:
				what = "err"
			default:
				for _, ps := range sp.Ports {
					if ps.Fd == fd && ps.Native {
						what = "port " + ps.Name + " (native: no variable)"
					} else if ps.Fd == fd {
						what = "port " + ps.Name + " ($" + ps.Name + "=/dev/fd/" + fmt.Sprint(fd) + ")"
					}
				}
			}
			for _, np := range sp.Natives {
				if fd == np.Obj || fd == np.Ctl || fd == np.Life {
					what = "native port " + np.Port
				}
			}
			if fd <= 2 && e.Kind == EndNull && slices.ContainsFunc(sp.Natives, func(np NativePort) bool { return np.Port == what }) {
				what += " (native)"
			}
			fmt.Fprintf(w, "      fd %d %s: %s\n", fd, what, e.describe(p))
		}
		for _, kv := range pr.Env {
			if len(sp.Natives) > 0 && strings.HasPrefix(kv, native.EnvPrefix) {
				fmt.Fprintf(w, "      %s\n", kv)
			}
		}
	}
}

func options(wr *Wire) string {
	o := wr.Spec.Options
	var s []string
	if o.Size > 0 {
		s = append(s, fmt.Sprintf("size=%d", o.Size))
	}
	if o.Path != "" {
		s = append(s, "path="+o.Path)
	}
	// A queue's planned sizes (budget.PlanMQ) show as if written.
	if mm := cmp.Or(o.MaxMsg, o.PlanMaxMsg); mm > 0 {
		s = append(s, fmt.Sprintf("maxmsg=%d", mm))
	}
	if ms := cmp.Or(o.MsgSize, o.PlanMsgSize); ms > 0 {
		s = append(s, fmt.Sprintf("msgsize=%d", ms))
	}
	if o.Socket != "" {
		s = append(s, o.Socket)
	}
	if o.Addr != "" {
		s = append(s, "addr="+o.Addr)
	}
	if wr.Spec.Readers > 1 {
		s = append(s, fmt.Sprintf("readers=%d", wr.Spec.Readers))
	}
	if wr.Spec.NativeWriter {
		s = append(s, "native writer")
	}
	for i, n := range wr.Spec.NativeReaders {
		if n && wr.Spec.Readers > 1 {
			s = append(s, fmt.Sprintf("native reader %d", i))
		} else if n {
			s = append(s, "native reader")
		}
	}
	if len(s) == 0 {
		return ""
	}
	return " [" + strings.Join(s, " ") + "]"
}

func ends(p *Plan, es []End) string {
	var s []string
	for _, e := range es {
		s = append(s, e.describe(p))
	}
	return strings.Join(s, ", ")
}

func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		var err error
		if q[i], err = syntax.Quote(a, syntax.LangBash); err != nil {
			q[i] = fmt.Sprintf("%q", a)
		}
	}
	return strings.Join(q, " ")
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

// semUsers says which stages take a unit of s and, when they outnumber its
// units, that the rest wait their turn.
func semUsers(p *Plan, s *parser.Sem) string {
	var users []string
	for _, sp := range p.Stages {
		if slices.Contains(sp.Stage.Uses, s) {
			users = append(users, sp.Stage.Name)
		}
	}
	switch {
	case len(users) == 0:
		return "; used by no stage"
	case len(users) > s.Count:
		return fmt.Sprintf("; used by %s: %d at a time, the others wait", strings.Join(users, ", "), s.Count)
	}
	return "; used by " + strings.Join(users, ", ")
}
