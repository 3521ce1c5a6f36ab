package exec

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

// The guardian makes a SIGKILL of ipcflow safe. A parent-death signal only
// reaches ipcflow's direct children, and `sh -c 'yes | sleep 100'` has
// grandchildren; named objects and the run directory would outlive the run
// too. So each run starts a guardian: a fork of ipcflow in a process group
// of its own that holds the read end of a pipe from ipcflow (fork.go).
//
//	ipcflow                               guardian
//	   | ---- "watch PGID\n" (per stage) --> |  remembers the group
//	   |                ...                  |
//	   | ---- "done\n" then close ---------> |  exit 0: the run cleaned up itself
//	or
//	   X  killed: the kernel closes the pipe |
//	                                         |  EOF without "done":
//	                                         |  SIGKILL every group, exec ipcflow
//	                                         |  (role reclaim): wait for the run's
//	                                         |  lock, remove what its manifest
//	                                         |  lists, exit
//
// Only ipcflow holds the write end (close-on-exec), so end of file means
// ipcflow is gone, however it went. Stages are killed by group, so their
// descendants go too unless they made groups of their own.

// Guardian is the handle ipcflow keeps on its run's guardian.
type Guardian struct {
	w   *os.File
	pid int
}

func init() { roles["reclaim"] = runReclaim }

// StartGuardian starts the guardian of run r: a fork of ipcflow that does
// not exec. Until ipcflow dies it only reads the pipe, in guardianChild, a
// loop of raw system calls; only after a crash does it exec ipcflow again
// (role "reclaim") to remove the run's objects. A guardian that exec'd at
// once cost every run a second Go start-up, a few ms of CPU on the path of
// the stages' own start.
func StartGuardian(r *RunDir) (*Guardian, error) {
	path, argv, err := internalCommand("reclaim", r.Path)
	if err != nil {
		return nil, fmt.Errorf("start guardian: %w", err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start guardian: %w", err)
	}
	defer pr.Close()
	c, err := newGuardianChild(int(pr.Fd()), path, argv, os.Environ())
	if err != nil {
		pw.Close()
		return nil, fmt.Errorf("start guardian: %w", err)
	}
	pid, err := forkGuardian(c)
	if err != nil {
		pw.Close()
		return nil, fmt.Errorf("start guardian: %w", err)
	}
	return &Guardian{w: pw, pid: pid}, nil
}

// Pid is the guardian's process id, so a reaper that waits for any child
// knows it is not a stage.
func (g *Guardian) Pid() int { return g.pid }

// Watch tells the guardian about a stage's process group.
func (g *Guardian) Watch(pgid int) error {
	_, err := g.w.WriteString("watch " + strconv.Itoa(pgid) + "\n")
	if err != nil {
		return fmt.Errorf("tell guardian of process group %d: %w", pgid, err)
	}
	return nil
}

// Release tells the guardian that the run ended and cleaned up after
// itself, so it exits without touching anything. It does not wait for it.
func (g *Guardian) Release() error {
	_, err := g.w.WriteString("done\n")
	g.w.Close()
	return err
}

// runReclaim is what a guardian execs once ipcflow died and it has killed
// the stages' groups: args[0] is the run directory. It removes what the
// run's manifest lists once the run's lock is free.
func runReclaim(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "ipcflow: guardian: want the run directory")
		return 70
	}
	dir := args[0]
	// ipcflow's lock goes with its last fd; a child caught between fork
	// and exec may hold it for a moment longer.
	if !waitForLock(dir, 2*time.Second) {
		fmt.Fprintf(os.Stderr, "ipcflow: guardian: run %s still locked; left for 'ipcflow clean'\n", dir)
		return 1
	}
	if err := removeRun(dir); err != nil {
		fmt.Fprintf(os.Stderr, "ipcflow: guardian: %v\n", err)
		return 1
	}
	return 0
}

// waitForLock reports whether the run's lock could be taken (its owner is
// dead) within d. The lock is let go at once: the run is dead for good.
func waitForLock(dir string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		dead, err := runIsDead(dir)
		if err != nil || dead {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
