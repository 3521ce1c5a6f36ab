package rundir

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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
	r, err := Create()
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
	if !strings.HasPrefix(r.Prefix, "ipcflow."+r.ID+".") || !isID(r.ID) {
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
	if dead, _ := isDead(r.Path); dead {
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
	if _, err := Create(); err == nil || !strings.Contains(err.Error(), "open to other users") {
		t.Fatalf("Create in a world-writable base: %v", err)
	}
}

// TestCleanDeadAndLiveRuns: clean removes what a dead run's manifest lists
// and stray objects of dead runs, and nothing of a live run.
func TestCleanDeadAndLiveRuns(t *testing.T) {
	privateRunBase(t)
	live, err := Create()
	if err != nil {
		t.Fatal(err)
	}
	defer live.Remove()
	dead, err := Create()
	if err != nil {
		t.Fatal(err)
	}
	mk := func(r *Dir, suffix string) string {
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

// nofdsEnv makes the test binary, started again by
// TestRemovedWhenFdsRunOut, use up its fds and then make a run directory:
// the manifest (the run's lock) cannot be opened.
const nofdsEnv = "IPCFLOW_TEST_RUNDIR_NOFDS"

// guardEnv makes the test binary, started again by startFakeGuardian, a
// stand-in for a run's guardian: argv as ipcflow gives its guardian, alive
// until its stdin closes.
const guardEnv = "IPCFLOW_TEST_RUNDIR_GUARD"

func TestMain(m *testing.M) {
	if os.Getenv(guardEnv) != "" {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	if os.Getenv(nofdsEnv) != "" {
		time.Sleep(time.Millisecond) // the runtime's poller takes its fds now
		for {
			if _, err := syscall.Open(os.DevNull, syscall.O_RDONLY|syscall.O_CLOEXEC, 0); err != nil {
				break
			}
		}
		_, err := Create()
		os.Stdout.WriteString(fmt.Sprint(err))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Out of fds while it starts, a run still removes its directory, and says
// first what went wrong.
func TestRemovedWhenFdsRunOut(t *testing.T) {
	base := privateRunBase(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), nofdsEnv+"=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "create run directory: ") && !strings.HasPrefix(string(out), "lock run directory: ") ||
		!strings.Contains(string(out), "too many open files") {
		t.Errorf("Create said %q, want the failure that stopped it first", out)
	}
	if ents, _ := os.ReadDir(base); len(ents) != 0 {
		t.Errorf("run directory left behind: %v (said %q)", ents, out)
	}
}

// The guardian's Reclaim, called once its ipcflow is dead, removes a run
// directory that ipcflow made and died before it could lock (a SIGTERM in
// its first milliseconds), where clean waits 10 s for such a young one;
// and a directory never made is no error.
func TestReclaimOfARunThatDiedBeforeItsLock(t *testing.T) {
	privateRunBase(t)
	d, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if err := Reclaim(d.Path, time.Second); err != nil {
		t.Fatalf("Reclaim of a directory never made: %v", err)
	}
	if err := os.Mkdir(d.Path, 0o700); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := Reclaim(d.Path, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.Path); !os.IsNotExist(err) {
		t.Errorf("the lockless run directory is still there")
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("Reclaim waited %v for a lock nobody will take", el)
	}
}
