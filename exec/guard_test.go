package exec

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/channels"
	"github.com/ipcflow/ipcflow/rundir"
)

// The guardian takes "done" and "watch PGID" lines with a plausible group,
// whatever else comes, and end of file without "done" is a crash.
func TestGuardianLines(t *testing.T) {
	in := "watch 123\nwatch 1\nwatch 0\nwatch -5\nwatch 12x\nwatch \nwatch\nwAtch 77\nwatch 99999999999999999999\ndone!\ndon\n\nwatch 456\n"
	groups, done := readGuardPipe(strings.NewReader(in))
	if done {
		t.Error("end of file taken for done")
	}
	if want := []int{123, 456}; !slices.Equal(groups, want) {
		t.Errorf("groups %v, want %v", groups, want)
	}
	if _, done := readGuardPipe(strings.NewReader(in + "done\nwatch 9\n")); !done {
		t.Error("done not seen")
	}
}

// fakeRunRole, the "test-fakerun" role, plays a run that is then killed:
// it makes a run directory and a recorded shm object, (unless args[0] is
// "noguard") starts a guardian, starts a stage whose shell has a
// grandchild, tells the guardian, prints "RUNDIR SHM PGID" and waits to be
// killed.
func fakeRunRole(args []string) int {
	r, err := rundir.Create()
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	shm := "/dev/shm/" + r.Prefix + "ring"
	r.Record(channels.KindShm, shm)
	os.WriteFile(shm, nil, 0o600)
	var g *Guardian
	if args[0] != "noguard" {
		if g, err = StartGuardian(r); err != nil {
			fmt.Println("error", err)
			return 1
		}
		// As the supervisor does before its first stage: the guardian
		// is started in the background, and a stage must not run
		// before it exists.
		if g.Pid() == 0 {
			fmt.Println("error: the guardian did not start")
			return 1
		}
	}
	cmd := exec.Command("sh", "-c", "sleep 1000 | sleep 1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		fmt.Println("error", err)
		return 1
	}
	if g != nil {
		g.Watch(cmd.Process.Pid)
	}
	fmt.Println(r.Path, shm, cmd.Process.Pid)
	select {}
}

func startFakeRun(t *testing.T, mode string) (proc *os.Process, runDir, shm string, pgid int) {
	t.Helper()
	path, argv, err := internalCommand("test-fakerun", mode)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, argv[1:]...)
	cmd.Stderr = os.Stderr
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 3 {
		cmd.Process.Kill()
		t.Fatalf("fake run said %q (%v)", line, err)
	}
	pgid, _ = strconv.Atoi(f[2])
	go cmd.Wait()
	return cmd.Process, f[0], f[1], pgid
}

// groupAlive reports whether a live (not zombie) process is left in group
// pgid. kill(-pgid, 0) would count zombies, which a container's init may
// never reap.
func groupAlive(pgid int) bool {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces, so split after ')'.
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 2 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			return true
		}
	}
	return false
}

func TestGuardianCleansAfterSIGKILL(t *testing.T) {
	privateRunBase(t)
	proc, runDir, shm, pgid := startFakeRun(t, "guard")
	proc.Signal(syscall.SIGKILL)
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) && (groupAlive(pgid) || exists(runDir) || exists(shm)) {
		time.Sleep(10 * time.Millisecond)
	}
	if groupAlive(pgid) {
		unix.Kill(-pgid, unix.SIGKILL)
		t.Error("a stage's process group (a shell and its children) outlived a SIGKILLed ipcflow by 1s")
	}
	if exists(runDir) || exists(shm) {
		t.Errorf("left behind after 1s: run dir %v, shm %v", exists(runDir), exists(shm))
	}
}

// Negative control: without the guardian the same kill leaves the stage's
// processes and the objects behind, so the test above can fail; clean then
// removes the objects.
func TestNoGuardianLeavesThingsForClean(t *testing.T) {
	privateRunBase(t)
	proc, runDir, shm, pgid := startFakeRun(t, "noguard")
	defer unix.Kill(-pgid, unix.SIGKILL)
	proc.Signal(syscall.SIGKILL)
	time.Sleep(300 * time.Millisecond)
	if !groupAlive(pgid) || !exists(runDir) || !exists(shm) {
		t.Fatalf("without a guardian expected leftovers: group %v, dir %v, shm %v", groupAlive(pgid), exists(runDir), exists(shm))
	}
	var out bytes.Buffer
	if err := rundir.Clean(&out, false); err != nil {
		t.Fatal(err)
	}
	if exists(runDir) || exists(shm) {
		t.Errorf("clean left run dir %v, shm %v:\n%s", exists(runDir), exists(shm), out.String())
	}
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// privateRunBase points runs of this test at a directory of its own.
func privateRunBase(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", d)
	return filepath.Join(d, "ipcflow")
}
