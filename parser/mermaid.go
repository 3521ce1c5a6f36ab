package parser

import (
	"fmt"
	"io"
	"strings"
)

// WriteMermaid writes the graph as a Mermaid flowchart. Node ids are the
// stage names behind a prefix ("s_end", not "end", which Mermaid reserves);
// labels are always quoted, with quotes and markup characters written as
// entities.
func WriteMermaid(w io.Writer, g *Graph) error {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	for _, s := range g.Stages {
		label := mermaidEscape(stageTitle(s)) + "<br/>" + mermaidEscape(s.Command)
		var ports []string
		for _, p := range s.Ports {
			ports = append(ports, p.Dir.String()+" "+p.Name)
		}
		if len(ports) > 0 {
			label += "<br/><i>" + mermaidEscape(strings.Join(ports, ", ")) + "</i>"
		}
		fmt.Fprintf(&b, "\t%s[\"%s\"]\n", mermaidID("s", s.Name), label)
	}
	for _, sp := range specials(g) {
		fmt.Fprintf(&b, "\t%s([\"%s\"])\n", mermaidID("io", sp), sp)
	}
	for _, sem := range g.Sems {
		fmt.Fprintf(&b, "\t%s{{\"sem %s = %d\"}}\n", mermaidID("sem", sem.Name), sem.Name, sem.Count)
	}
	for _, e := range g.Edges {
		label := e.Label()
		if ports := portNote(e); ports != "" {
			label += " " + ports
		}
		fmt.Fprintf(&b, "\t%s -->|\"%s\"| %s\n", mermaidNode(e.From), mermaidEscape(label), mermaidNode(e.To))
	}
	for _, s := range g.Stages {
		for _, dep := range s.After {
			fmt.Fprintf(&b, "\t%s -.->|\"after\"| %s\n", mermaidID("s", dep.Name), mermaidID("s", s.Name))
		}
		for _, sem := range s.Uses {
			fmt.Fprintf(&b, "\t%s -.- %s\n", mermaidID("sem", sem.Name), mermaidID("s", s.Name))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// portNote names the ports of an edge when one is not the default (out on
// the left, in on the right): "(err → in)", "(log → stderr)".
func portNote(e *Edge) string {
	name := func(ep Endpoint) string { return ep.Port }
	if (e.From.Stage == nil || e.From.Port == "out") && (e.To.Stage == nil || e.To.Port == "in") {
		return ""
	}
	return fmt.Sprintf("(%s → %s)", name(e.From), name(e.To))
}

func mermaidNode(ep Endpoint) string {
	if ep.Stage == nil {
		return mermaidID("io", ep.Port)
	}
	return mermaidID("s", ep.Stage.Name)
}

// mermaidID makes a node id from a prefix and a name of the language, which
// holds only letters, digits and '_'.
func mermaidID(prefix, name string) string { return prefix + "_" + name }

// mermaidEscape writes text for a quoted Mermaid label: entity codes for
// the characters that would end the label or be read as markup.
func mermaidEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString("#quot;")
		case '#':
			b.WriteString("#35;")
		case '<':
			b.WriteString("#lt;")
		case '>':
			b.WriteString("#gt;")
		case '&':
			b.WriteString("#amp;")
		case '|':
			b.WriteString("#124;")
		case '`':
			b.WriteString("#96;")
		case '\n':
			b.WriteString("<br/>")
		case '\r', '\t':
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
