package main

// FmtCmd: SCAFFOLD, replaced by the owner of this command.
type FmtCmd struct{}

func (FmtCmd) Run(s *Streams) error { return &ExitStatus{Code: 2, Msg: "fmt: not built yet"} }
