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
	fmt.Fprintf(s.Stdout, "ipcflow %s%s %s %s/%s\n", version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
