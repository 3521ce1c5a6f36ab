package main

// BenchCmd: SCAFFOLD, replaced by the owner of this command.
type BenchCmd struct{}

func (BenchCmd) Run(s *Streams) error { return &ExitStatus{Code: 2, Msg: "bench: not built yet"} }
