package main

import (
	"fmt"

	"github.com/ipcflow/ipcflow/remote"
)

// VersionCmd prints the module version ipcflow was built from (a tagged
// version when installed with `go install ...@vX`, "(devel)" and the VCS
// revision in a checkout) and the Go version.
type VersionCmd struct{}

func (VersionCmd) Run(s *Streams) error {
	// A stdout closed or gone is not an error for the version (nor for
	// help): there is nothing to clean up and nobody to tell.
	fmt.Fprintln(s.Stdout, version())
	return nil
}

// version is the line `ipcflow version` and `ipcflow --version` print;
// package remote compares a host's with it, so it is defined there.
func version() string { return remote.Version() }
