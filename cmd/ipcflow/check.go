package main

// CheckCmd: SCAFFOLD, replaced by the owner of this command.
type CheckCmd struct{}

func (CheckCmd) Run(s *Streams) error { return &ExitStatus{Code: 2, Msg: "check: not built yet"} }
