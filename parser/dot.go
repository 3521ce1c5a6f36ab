package parser

import (
	"fmt"
	"io"
	"strings"
)

// WriteDot writes the graph in Graphviz's dot language. Stages are record
// nodes: input ports on the left, the name (with replicas and semaphores)
// and the command in the middle, output ports on the right. Data edges are
// labelled with their type and options; `after` is a dashed edge; a
// semaphore is a hexagon joined to its users by dotted lines.
func WriteDot(w io.Writer, g *Graph) error {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %s {\n", dotQuote(g.File))
	b.WriteString("\trankdir=LR;\n")
	b.WriteString("\tnode [shape=record, fontname=\"monospace\", fontsize=10];\n")
	b.WriteString("\tedge [fontname=\"monospace\", fontsize=9];\n")
	for _, s := range g.Stages {
		fmt.Fprintf(&b, "\t%s [label=%s];\n", dotQuote("stage "+s.Name), dotQuote(recordLabel(s)))
	}
	for _, sp := range specials(g) {
		fmt.Fprintf(&b, "\t%s [shape=plaintext, label=%s];\n", dotQuote(sp), dotQuote(sp))
	}
	for _, sem := range g.Sems {
		fmt.Fprintf(&b, "\t%s [shape=hexagon, label=%s];\n", dotQuote("sem "+sem.Name), dotQuote(fmt.Sprintf("sem %s = %d", sem.Name, sem.Count)))
	}
	for _, e := range g.Edges {
		fmt.Fprintf(&b, "\t%s -> %s [label=%s];\n", dotEnd(e.From), dotEnd(e.To), dotQuote(e.Label()))
	}
	for _, s := range g.Stages {
		for _, dep := range s.After {
			fmt.Fprintf(&b, "\t%s -> %s [style=dashed, label=\"after\"];\n", dotQuote("stage "+dep.Name), dotQuote("stage "+s.Name))
		}
		for _, sem := range s.Uses {
			fmt.Fprintf(&b, "\t%s -> %s [style=dotted, arrowhead=none];\n", dotQuote("sem "+sem.Name), dotQuote("stage "+s.Name))
		}
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// specials lists ipcflow's own streams that edges use, in a fixed order.
func specials(g *Graph) []string {
	used := map[string]bool{}
	for _, e := range g.Edges {
		for _, ep := range []Endpoint{e.From, e.To} {
			if ep.Stage == nil {
				used[ep.Port] = true
			}
		}
	}
	var out []string
	for _, s := range []string{Stdin, Stdout, Stderr} {
		if used[s] {
			out = append(out, s)
		}
	}
	return out
}

// dotEnd names an endpoint: a record field of a stage node, or a special.
func dotEnd(ep Endpoint) string {
	if ep.Stage == nil {
		return dotQuote(ep.Port)
	}
	return dotQuote("stage "+ep.Stage.Name) + ":" + dotQuote("p_"+ep.Port)
}

// recordLabel is a stage's record. With rankdir=LR, braces turn the fields: ports on the left and right, title over command in the middle.
func recordLabel(s *Stage) string {
	ins := []string{"<p_in> in"}
	outs := []string{"<p_out> out", "<p_err> err"}
	for _, p := range s.Ports {
		f := fmt.Sprintf("<p_%s> %s", p.Name, p.Name)
		if p.Dir == In {
			ins = append(ins, f)
		} else {
			outs = append(outs, f)
		}
	}
	return fmt.Sprintf("{{%s}|{%s|%s}|{%s}}", strings.Join(ins, "|"), recordEscape(stageTitle(s)),
		recordEscape(s.Command), strings.Join(outs, "|"))
}

// stageTitle is a stage's name with its replicas, semaphores, after,
// directory, host and native flag.
func stageTitle(s *Stage) string {
	t := s.Name
	if s.Replicated() {
		n := s.ReplicasText
		if n == "" {
			n = fmt.Sprint(s.Replicas)
		}
		t += " ×" + n
		if s.Unordered {
			t += " unordered"
		}
		if s.MergeText != "" {
			t += " merge " + s.MergeText
		}
	}
	if len(s.Uses) > 0 {
		names := make([]string, len(s.Uses))
		for i, u := range s.Uses {
			names[i] = u.Name
		}
		t += " uses " + strings.Join(names, ", ")
	}
	if s.DirText != "" {
		t += " dir " + s.DirText
	}
	if s.HostText != "" {
		t += " on " + s.HostText
	}
	if s.Native {
		t += " native"
	}
	return t
}

// recordEscape escapes the characters that structure a record label, and
// left-justifies each line of a multi-line command.
func recordEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '{', '}', '|', '<', '>':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\l`)
		case '\r', '\t':
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	if strings.Contains(s, "\n") {
		b.WriteString(`\l`)
	}
	return b.String()
}

// dotQuote makes a double-quoted dot ID. Inside quotes dot only treats \"
// specially, plus a final backslash; escape-sequences like \l are kept for
// labels, so backslashes are passed as they are.
func dotQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteByte(c)
		}
	}
	if strings.HasSuffix(s, `\`) && !strings.HasSuffix(s, `\\`) {
		b.WriteByte(' ')
	}
	b.WriteByte('"')
	return b.String()
}
