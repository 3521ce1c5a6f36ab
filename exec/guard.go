package exec

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/rundir"
)

// The guardian makes a SIGKILL of ipcflow safe. A parent-death signal only
// reaches ipcflow's direct children, and `sh -c 'yes | sleep 100'` has
// grandchildren; named objects and the run directory would outlive the run
// too. So each run starts a guardian: ipcflow's own binary again
// (/proc/self/exe, which works even when the file was replaced or deleted
// mid-run), in role "guard", in a process group of its own, at a lower
// priority, with the read end of a pipe from ipcflow as its stdin.
//
//	ipcflow                               guardian
//	   | ---- "watch PGID\n" (per stage) --> |  remembers the group
//	   |                ...                  |
//	   | ---- "done\n" then close ---------> |  exit 0: the run cleaned up itself
//	or
//	   X  killed: the kernel closes the pipe |
//	                                         |  end of file without "done":
//	                                         |  SIGKILL every group, wait for the
//	                                         |  run's lock, remove what its
//	                                         |  manifest lists (the run's cgroup
//	                                         |  first, with whatever is in it), exit
//
// Only ipcflow holds the write end (close-on-exec), so end of file means
// ipcflow is gone, however it went. Stages are killed by group; a run with
// a cgroup of its own (contain.go) needs no groups: its manifest's cgroup
// line kills everything in it, even what left its group.
//
// The guardian is a Go program with default signal handling, like any
// other: runc starts its init the same way. (It used to be a fork of
// ipcflow without exec, running raw system calls with every signal
// blocked: nothing in Go promises that such code keeps working, and SIGTERM
// could not stop it.)

// Guardian is the handle ipcflow keeps on its run's guardian.
type Guardian struct {
	w       *os.File
	started chan struct{} // closed once the start below has returned
	pid     int
	err     error
}

// guardNice is the guardian's nice value: its Go start-up runs while the
// stages start, on a machine that may have two CPUs, and should yield to
// them.
const guardNice = 10

// StartGuardian starts the guardian of run r. The start goes on in the
// background while the run makes its objects: a fork and exec of ipcflow
// costs 0.15 to 0.4 ms here, and the guardian's own Go start-up about 1 ms
// of CPU, which the stages need not wait for. The supervisor waits for
// the fork and exec (Pid) before it starts the first stage, so no stage
// runs unguarded; objects made meanwhile are in the manifest, for `ipcflow
// clean` should ipcflow be killed in that moment. Lines written before the
// guardian reads wait in the pipe.
// Its nice value is set once it has exec'd. (Not by forking from a thread
// set to guardNice and ended afterwards, which would start it nice: a
// stage forked earlier from that same thread would get its parent-death
// signal when the thread ended, and did, killed at random.)
func StartGuardian(r *rundir.Dir) (*Guardian, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start guardian: %w", err)
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("start guardian: %w", err)
	}
	g := &Guardian{w: pw, started: make(chan struct{})}
	// stdout is /dev/null: a shell's $(ipcflow run ...) must not wait for
	// the guardian; stderr stays, for what it has to say after a crash.
	attr := &syscall.ProcAttr{
		// One P: the guardian has one goroutine to run, and its start-up
		// competes with the stages' for the CPUs.
		Env:   append(EnvironWithout([]string{"GOMAXPROCS"}), "GOMAXPROCS=1"),
		Files: []uintptr{pr.Fd(), null.Fd(), 2},
		Sys:   &syscall.SysProcAttr{Setpgid: true}, // a ^C to ipcflow's group is not for it
	}
	argv := []string{os.Args[0], internalMarker, rundir.GuardRole, r.Path} // read back by rundir.procOwners
	go func() {
		defer close(g.started)
		defer pr.Close()
		defer null.Close()
		g.pid, g.err = syscall.ForkExec("/proc/self/exe", argv, attr)
		if g.err != nil {
			g.err = fmt.Errorf("start guardian: %w", g.err)
			return
		}
		unix.Setpriority(unix.PRIO_PROCESS, g.pid, guardNice)
	}()
	return g, nil
}

// Pid is the guardian's process id (0 if it could not start), so a reaper
// that waits for any child knows it is not a stage.
func (g *Guardian) Pid() int {
	<-g.started
	return g.pid
}

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
	<-g.started
	if g.err != nil {
		return g.err
	}
	return err
}

// guardRole is the "guard" role: args[0] is the run directory, stdin the
// pipe from ipcflow.
func guardRole(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "ipcflow: guardian: want the run directory")
		return 70
	}
	groups, done := readGuardPipe(os.Stdin)
	if done {
		return 0
	}
	for _, g := range groups {
		unix.Kill(-g, unix.SIGKILL)
	}
	return reclaim(args[0])
}

// readGuardPipe reads ipcflow's lines until "done" (done true) or end of
// file, and returns the process groups "watch PGID" lines named. Anything
// else is ignored.
func readGuardPipe(r io.Reader) (groups []int, done bool) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "done" {
			return groups, true
		}
		if s, ok := strings.CutPrefix(line, "watch "); ok {
			if pgid, err := strconv.Atoi(s); err == nil && pgid > 1 {
				groups = append(groups, pgid)
			}
		}
	}
	return groups, false
}

// reclaim removes what the dead run in dir left (rundir.Reclaim) and
// returns the guardian's exit status.
func reclaim(dir string) int {
	if err := rundir.Reclaim(dir, 2*time.Second); err != nil {
		fmt.Fprintf(os.Stderr, "ipcflow: guardian: %v\n", err)
		return 1
	}
	return 0
}
