package main

// CleanCmd: SCAFFOLD, replaced by the owner of this command.
type CleanCmd struct{}

func (CleanCmd) Run(s *Streams) error { return &ExitStatus{Code: 2, Msg: "clean: not built yet"} }
