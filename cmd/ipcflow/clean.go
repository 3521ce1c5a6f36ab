package main

import "github.com/ipcflow/ipcflow/rundir"

// CleanCmd removes what crashed runs left: the objects their manifests list,
// their run directories, and any ipcflow.<id>.* object of this user whose
// run is not alive. Live runs are never touched: a run holds a lock on its
// directory for its whole life.
type CleanCmd struct {
	DryRun bool `help:"Print what would be removed; remove nothing."`
}

func (c *CleanCmd) Run(s *Streams) error {
	if err := rundir.Clean(s.Stdout, c.DryRun); err != nil {
		return &ExitStatus{Code: 1, Msg: "clean: " + err.Error()}
	}
	return nil
}
