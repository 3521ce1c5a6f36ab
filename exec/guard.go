package exec

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The guardian makes a SIGKILL of ipcflow safe. A parent-death signal only
// reaches ipcflow's direct children, and `sh -c 'yes | sleep 100'` has
// grandchildren; named objects and the run directory would outlive the run
// too. So each run starts a guardian: a copy of ipcflow in a process group
// of its own that holds the read end of a pipe from ipcflow.
//
//	ipcflow                               guardian
//	   | ---- "watch PGID\n" (per stage) --> |  remembers the group
//	   |                ...                  |
//	   | ---- "done\n" then close ---------> |  exit 0: the run cleaned up itself
//	or
//	   X  killed: the kernel closes the pipe |
//	                                         |  EOF without "done":
//	                                         |  SIGKILL every group, wait for the
//	                                         |  run's lock, remove what its
//	                                         |  manifest lists, exit
//
// Only ipcflow holds the write end (close-on-exec), so end of file means
// ipcflow is gone, however it went. Stages are killed by group, so their
// descendants go too unless they made groups of their own.

// Guardian is the handle ipcflow keeps on its run's guardian.
type Guardian struct {
	w    *os.File
	proc *os.Process
}

func init() { roles["guard"] = runGuard }

// StartGuardian starts the guardian of run r.
func StartGuardian(r *RunDir) (*Guardian, error) {
	path, argv, err := internalCommand("guard", r.Path)
	if err != nil {
		return nil, fmt.Errorf("start guardian: %w", err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start guardian: %w", err)
	}
	defer pr.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		pw.Close()
		return nil, fmt.Errorf("start guardian: %w", err)
	}
	defer null.Close()
	// syscall.ForkExec, as for stages: os.StartProcess would first fork a
	// child to probe for pidfd support, once per process, on the path of
	// every run's start.
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{null.Fd(), null.Fd(), os.Stderr.Fd(), pr.Fd()},
		// Its own group: a ^C or a signal sent to ipcflow's group must not
		// take the guardian down with the run it is there to clean up.
		Sys: &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		pw.Close()
		return nil, fmt.Errorf("start guardian: %w", err)
	}
	// The guardian has nothing to do until ipcflow dies, but its start (a
	// Go runtime's, a few ms of CPU) competes with the stages starting at
	// the same moment: at nice 10 it mostly starts in idle time (the
	// watch lines wait in the pipe meanwhile). Not 19: on a saturated
	// machine it must still get the CPU within a second of ipcflow's
	// death, and an unprivileged process cannot raise its priority again.
	unix.Setpriority(unix.PRIO_PROCESS, pid, 10)
	proc, err := os.FindProcess(pid) // never fails on Unix
	if err != nil {
		pw.Close()
		return nil, fmt.Errorf("start guardian: %w", err)
	}
	return &Guardian{w: pw, proc: proc}, nil
}

// Pid is the guardian's process id, so a reaper that waits for any child
// knows it is not a stage.
func (g *Guardian) Pid() int { return g.proc.Pid }

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

// runGuard is the guardian process: args[0] is the run directory, fd 3 the
// pipe from ipcflow.
func runGuard(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "ipcflow: guardian: want the run directory")
		return 70
	}
	dir := args[0]
	from := os.NewFile(3, "ipcflow")
	var groups []int
	sc := bufio.NewScanner(from)
	for sc.Scan() {
		line := sc.Text()
		if line == "done" {
			return 0
		}
		if s, ok := strings.CutPrefix(line, "watch "); ok {
			if pgid, err := strconv.Atoi(s); err == nil && pgid > 1 {
				groups = append(groups, pgid)
			}
		}
	}
	// ipcflow is gone without saying goodbye.
	for _, pgid := range groups {
		unix.Kill(-pgid, unix.SIGKILL)
	}
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
