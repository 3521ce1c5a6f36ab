package main

// RunCmd: SCAFFOLD, replaced by the owner of this command.
type RunCmd struct{}

func (RunCmd) Run(s *Streams) error { return &ExitStatus{Code: 2, Msg: "run: not built yet"} }
