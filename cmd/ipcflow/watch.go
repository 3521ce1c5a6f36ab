package main

// WatchCmd is SPEC 7's `ipcflow watch` (later): designed, not built yet.
// It is refused with one line rather than taken for a script called
// "watch".
type WatchCmd struct {
	Args []string `arg:"" optional:"" passthrough:"" help:"FILE [NAME=VALUE...] [--on PATH...]"`
}

func (WatchCmd) Run(s *Streams) error {
	return &ExitStatus{Code: usageStatus, Msg: "watch is not supported yet"}
}

// PsCmd is `ipcflow ps [RUN]` (SPEC 7, 9): designed, not built yet, and
// refused with one clear line rather than taken for a file name.
type PsCmd struct {
	ID string `arg:"" optional:"" name:"run" help:"A live run's id, for its live view."`
}

func (PsCmd) Run(s *Streams) error {
	return &ExitStatus{Code: usageStatus, Msg: "ps is not supported yet"}
}
