package exec

import (
	"os"

	"github.com/ipcflow/ipcflow/isolate"
	"github.com/ipcflow/ipcflow/remote"
	"github.com/ipcflow/ipcflow/rundir"
)

// ipcflow starts copies of its own binary for work that must live in a
// process of its own: a stage's shell (role "sh", shell.go) and the run's
// guardian (role "guard", guard.go). The copy's argv is
//
//	argv[0] __ipcflow_internal ROLE ARGS...
//
// argv[0] is kept as ipcflow's own, so a test binary standing in for
// ipcflow (testscript) dispatches the copy back to main, which calls
// RunInternal before anything else.
const internalMarker = rundir.InternalMarker

// roles are the internal roles, by name: the one table of them. Each
// function runs its role with the arguments after the role's name and
// returns the exit status.
var roles = map[string]func(args []string) int{
	rundir.GuardRole: guardRole,        // the run's guardian (guard.go)
	"sh":             shellRole,        // a stage's shell (shell.go)
	"kill":           killRole,         // kill(1) for the stage shell where PATH has none (shell.go)
	"replicas":       replicasRole,     // a replicated stage's runner (replicarun.go)
	"limits":         isolate.Enter,    // a limited stage's start: its cgroups and rlimits, then exec (limit.go)
	"remote":         remoteRole,       // a remote stage's stand-in (remote.go)
	"agent":          remote.AgentRole, // on a remote host: a stage and its guardian
	"port":           remote.PortRole,  // on a remote host: one stream of a stage
}

// testRoles is the hook for roles that only exec's tests have (a flow run
// in a child process, a run killed on purpose): a test binary stands in
// for ipcflow, and its TestMain fills this table (main_test.go) before it
// calls RunInternal. It is nil in ipcflow itself.
var testRoles map[string]func(args []string) int

// RunInternal runs the internal role args name, if they name one, and
// reports whether it did.
func RunInternal(args []string) (int, bool) {
	if len(args) < 3 || args[1] != internalMarker {
		return 0, false
	}
	role, ok := roles[args[2]]
	if !ok {
		role, ok = testRoles[args[2]]
	}
	if !ok {
		os.Stderr.WriteString("ipcflow: unknown internal role " + args[2] + "\n")
		return 70, true
	}
	return role(args[3:]), true
}

// internalCommand returns the path and argv that start role in a copy of
// this binary.
func internalCommand(role string, args ...string) (path string, argv []string, err error) {
	path, err = os.Executable()
	if err != nil {
		return "", nil, err
	}
	argv = append([]string{os.Args[0], internalMarker, role}, args...)
	return path, argv, nil
}
