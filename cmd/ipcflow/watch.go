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
