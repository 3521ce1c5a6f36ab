package main

// LockCmd: SCAFFOLD, replaced by the owner of this command.
type LockCmd struct{}

func (LockCmd) Run(s *Streams) error { return &ExitStatus{Code: 2, Msg: "lock: not built yet"} }
