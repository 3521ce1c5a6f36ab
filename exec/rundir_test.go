package exec

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/channels"
	"github.com/ipcflow/ipcflow/fileid"
	"github.com/ipcflow/ipcflow/locks"
)

// privateRunBase points runs of this test at a directory of its own.
func privateRunBase(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", d)
	return filepath.Join(d, "ipcflow")
}

func TestRunDirLifecycle(t *testing.T) {
	base := privateRunBase(t)
	r, err := CreateRunDir()
	if err != nil {
		t.Fatal(err)
	}
	if got := filepath.Dir(r.Path); got != base {
		t.Fatalf("run dir %s not under %s", r.Path, base)
	}
	for _, p := range []string{base, r.Path} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("%s: mode %v, err %v; want 0700", p, fi.Mode().Perm(), err)
		}
	}
	if !strings.HasPrefix(r.Prefix, "ipcflow."+r.ID+".") || !isRunID(r.ID) {
		t.Fatalf("prefix %q, id %q", r.Prefix, r.ID)
	}
	shm := "/dev/shm/" + r.Prefix + "e1"
	file := filepath.Join(r.Path, "e2.fifo")
	for kind, name := range map[string]string{channels.KindShm: shm, channels.KindFile: file} {
		if err := r.Record(kind, name); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		st, _, err := fileid.StatNoFollow(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Made(name, fileid.IdentityOf(&st)); err != nil {
			t.Fatal(err)
		}
	}
	if dead, _ := runIsDead(r.Path); dead {
		t.Fatal("a live run's lock could be taken")
	}
	d, err := readDeadRun(r.Path)
	if err != nil || len(d.objs) != 2 {
		t.Fatalf("manifest: %v", err)
	}
	if err := r.Remove(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{shm, file, r.Path} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there after Remove (%v)", p, err)
		}
	}
	if err := r.Remove(); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
}

func TestRunBaseRefusesForeignDir(t *testing.T) {
	base := privateRunBase(t)
	if err := os.Mkdir(base, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(base, 0o777)
	if _, err := CreateRunDir(); err == nil || !strings.Contains(err.Error(), "open to other users") {
		t.Fatalf("CreateRunDir in a world-writable base: %v", err)
	}
}

// TestCleanDeadAndLiveRuns: clean removes what a dead run's manifest lists
// and stray objects of dead runs, and nothing of a live run.
func TestCleanDeadAndLiveRuns(t *testing.T) {
	privateRunBase(t)
	live, err := CreateRunDir()
	if err != nil {
		t.Fatal(err)
	}
	defer live.Remove()
	dead, err := CreateRunDir()
	if err != nil {
		t.Fatal(err)
	}
	mk := func(r *RunDir, suffix string) string {
		p := "/dev/shm/" + r.Prefix + suffix
		if err := r.Record(channels.KindShm, p); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	liveObj, deadObj := mk(live, "e1"), mk(dead, "e1")
	// A stray: named after the dead run but missing from its manifest.
	stray := "/dev/shm/" + dead.Prefix + "stray"
	os.WriteFile(stray, nil, 0o600)
	defer os.Remove(stray)
	// And a semaphore of the dead run, also missing from its manifest.
	sem, err := locks.Create("/"+dead.Prefix+"db", 1)
	if err != nil {
		t.Fatal(err)
	}
	sem.Close()
	semFile, _ := locks.SemPath("/" + dead.Prefix + "db")
	defer os.Remove(semFile)
	// The dead run "crashes": its lock goes with its fd, its files stay.
	dead.manifest.Close()
	dead.manifest = nil

	var out bytes.Buffer
	if err := Clean(&out, true); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{liveObj, deadObj, stray, dead.Path} {
		if _, err := os.Lstat(p); err != nil {
			t.Fatalf("dry run removed %s", p)
		}
	}
	for _, want := range []string{"would remove shm " + deadObj, "would remove shm " + stray, "would remove sem /" + dead.Prefix + "db", "would remove run directory " + dead.Path} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), live.ID) {
		t.Errorf("dry run names the live run:\n%s", out.String())
	}
	dry := out.String()
	out.Reset()
	if err := Clean(&out, false); err != nil {
		t.Fatal(err)
	}
	// The dry run says exactly what the real one then does, each once.
	if want := strings.ReplaceAll(dry, "would remove ", "removed "); out.String() != want {
		t.Errorf("clean said:\n%s\nits dry run promised:\n%s", out.String(), dry)
	}
	for _, p := range []string{deadObj, stray, semFile, dead.Path} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("clean left %s", p)
		}
	}
	for _, p := range []string{liveObj, live.Path} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("clean removed %s of a live run", p)
		}
	}
	out.Reset()
	Clean(&out, false)
	if out.Len() != 0 {
		t.Errorf("second clean not quiet: %s", out.String())
	}
}

// The "fakerun" role plays a run that is then killed: it makes a run
// directory and a recorded shm object, (unless args[0] is "noguard") starts
// a guardian, starts a stage whose shell has a grandchild, tells the
// guardian, prints "RUNDIR SHM PGID" and waits to be killed.
func init() {
	roles["test-fakerun"] = func(args []string) int {
		r, err := CreateRunDir()
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
	if err := Clean(&out, false); err != nil {
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

// A run whose directory is where this clean does not look (another
// XDG_RUNTIME_DIR or TMPDIR) is still alive: its semaphores, held by their
// creator, are spared; once the run is gone they are strays to remove.
func TestCleanSparesSemaphoresOfARunElsewhere(t *testing.T) {
	privateRunBase(t)
	name := "/ipcflow.00000000" + fmt.Sprintf("%08x", os.Getpid()) + ".db"
	sem, err := locks.Create(name, 1)
	if err != nil {
		t.Fatal(err)
	}
	semFile, _ := locks.SemPath(name)
	defer os.Remove(semFile)
	var out bytes.Buffer
	if err := Clean(&out, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(semFile); err != nil || strings.Contains(out.String(), name) {
		t.Fatalf("clean removed a live run's semaphore %s:\n%s", name, out.String())
	}
	sem.Close() // the run ends without removing it (as a crash would)
	out.Reset()
	if err := Clean(&out, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(semFile); !os.IsNotExist(err) || !strings.Contains(out.String(), "removed sem "+name) {
		t.Errorf("clean left the semaphore of a dead run, or did not say so:\n%s", out.String())
	}
}
