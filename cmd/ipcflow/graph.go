package main

// GraphCmd: SCAFFOLD, replaced by the owner of this command.
type GraphCmd struct{}

func (GraphCmd) Run(s *Streams) error { return &ExitStatus{Code: 2, Msg: "graph: not built yet"} }
