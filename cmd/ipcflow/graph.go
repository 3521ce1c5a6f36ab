package main

import (
	"github.com/ipcflow/ipcflow/exec"
	"github.com/ipcflow/ipcflow/parser"
)

// GraphCmd prints a flow's graph for Graphviz or Mermaid.
type GraphCmd struct {
	Format string `short:"f" default:"dot" enum:"dot,mermaid" help:"Output format: dot (Graphviz) or mermaid."`
	File   string `arg:"" name:"file" completion-predictor:"script" help:"Script to draw."`
}

// Help is shown by `ipcflow graph --help`.
func (GraphCmd) Help() string {
	return `Check FILE and print its graph on stdout: stages as nodes showing their
command, extra ports, replicas and semaphores; data edges labelled with their
type and options; 'after' as dashed edges; semaphores as hexagons.

  ipcflow graph flow.ipcflow | dot -Tsvg > flow.svg
  ipcflow graph --format mermaid flow.ipcflow

A script with errors is not drawn: its errors are printed and the exit
status is 2.`
}

func (c *GraphCmd) Run(s *Streams) error {
	g, err := parser.ParseFile(c.File)
	if err != nil {
		exec.PrintParseError(s.scriptErrors(), err)
		return &ExitStatus{Code: usageStatus}
	}
	if c.Format == "mermaid" {
		return parser.WriteMermaid(s.Stdout, g)
	}
	return parser.WriteDot(s.Stdout, g)
}
