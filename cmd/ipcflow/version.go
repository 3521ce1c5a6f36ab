package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
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

// version is the line `ipcflow version` and `ipcflow --version` print.
func version() string {
	version, rev := "(devel)", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, kv := range bi.Settings {
			if kv.Key == "vcs.revision" && len(kv.Value) >= 12 {
				rev = " " + kv.Value[:12]
			}
		}
	}
	return fmt.Sprintf("ipcflow %s%s %s %s/%s", version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
