package rundir

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
)

// InternalMarker and GuardRole are how ipcflow starts its run's guardian
// (exec/guard.go): argv is
//
//	ipcflow __ipcflow_internal guard <run directory>
//
// for the run's whole life. Clean reads it back in /proc (procOwners).
const (
	InternalMarker = "__ipcflow_internal"
	GuardRole      = "guard"
)

// procDir is where procOwners looks for processes (a variable for the
// tests).
var procDir = "/proc"

// procOwners lists the ids of the runs that some process on this machine
// shows alive, wherever their directories are (another XDG_RUNTIME_DIR or
// TMPDIR, or a directory a temp cleaner removed):
//
//   - a process with an open fd on a run's manifest (or on the lock file
//     of an earlier version): ipcflow holds it, locked, from the moment
//     the directory is made until every object of the run is removed;
//   - a guardian, whose argv names the run's directory: alive for the
//     whole run, and after a crash until it has removed what the run
//     left.
//
// A run's name alone says nothing of its owner's life; these two do,
// from before a run makes its first named object until after its last is
// gone. A process that only pretends (a made-up argv, an fd on a file
// called manifest in a directory named like a run) makes clean keep that
// run's objects: the safe side. Processes clean may not look into
// (another user's, for a user who is not root) are passed over: their
// runs' objects are not this user's anyway.
func procOwners() map[string]bool {
	ids := map[string]bool{}
	procs, _ := os.ReadDir(procDir)
	for _, p := range procs {
		if p.Name()[0] < '0' || p.Name()[0] > '9' {
			continue
		}
		dir := filepath.Join(procDir, p.Name())
		if id, ok := guardianOf(dir); ok {
			ids[id] = true
		}
		fds, _ := os.ReadDir(filepath.Join(dir, "fd"))
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
			if err != nil || !strings.HasPrefix(target, "/") {
				continue // gone meanwhile, or a pipe, a socket, ...
			}
			// Still the run's lock when its directory was removed.
			target = strings.TrimSuffix(target, " (deleted)")
			if name := filepath.Base(target); name != manifestFile && name != lockFile {
				continue
			}
			if id := filepath.Base(filepath.Dir(target)); isID(id) {
				ids[id] = true
			}
		}
	}
	return ids
}

// guardianOf says which run the process at /proc/<pid> guards, if it is
// a guardian.
func guardianOf(dir string) (string, bool) {
	cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil {
		return "", false
	}
	argv := bytes.Split(bytes.TrimSuffix(cmdline, []byte{0}), []byte{0})
	if len(argv) != 4 || string(argv[1]) != InternalMarker || string(argv[2]) != GuardRole {
		return "", false
	}
	id := filepath.Base(string(argv[3]))
	return id, isID(id)
}

// liveness answers whether the run id is alive: seen alive in the bases
// clean scanned (live), else shown alive by a process (procOwners, read
// once, when first asked).
func liveness(live map[string]bool) func(id string) bool {
	var owners map[string]bool
	return func(id string) bool {
		if live[id] {
			return true
		}
		if owners == nil {
			owners = procOwners()
		}
		return owners[id]
	}
}
