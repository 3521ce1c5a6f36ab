package exec

import (
	"bytes"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipcflow/ipcflow/internal/testkit"
	"github.com/ipcflow/ipcflow/parser"
	"github.com/ipcflow/ipcflow/rundir"
)

// Removal by identity: a run, and `ipcflow clean` after a crash, remove
// only the objects the run made, never a file that took one's name since
// or one reached through a directory swapped for a symlink.

// otherUser is an unprivileged user whose files the tests make: nobody,
// or IPCFLOW_TEST_USER. Tests that need one run as root.
func otherUser(t *testing.T) (uid, gid int) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root, to act as a second user")
	}
	name := os.Getenv("IPCFLOW_TEST_USER")
	if name == "" {
		name = "nobody"
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Skipf("no user %s to act as a second user: %v", name, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// sharedDir is a fresh directory everyone can use, as /tmp is (mode 1777):
// t.TempDir is private to root.
func sharedDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "ipcflow-shared-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o1777); err != nil {
		t.Fatal(err)
	}
	return d
}

// A stage that replaces its edge's fifo with a regular file of its own.
func init() {
	testFlows["fifo-path-swap"] = func() *parser.Graph {
		b := newGraph()
		b.g.Params = []*parser.Param{{Name: "P"}}
		b.stage("w", `rm "$P" && echo mine > "$P"; echo hi`)
		b.stage("r", "cat")
		b.edge("w", "r", parser.FIFO, parser.Options{Path: os.Getenv("IPCFLOW_TEST_FIFO")})
		return b.g
	}
}

func TestRunKeepsAFileThatReplacedItsFifo(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "watch.fifo")
	fr := newFlowRun(t, "fifo-path-swap", "P="+fifo)
	fr.cmd.Env = append(fr.cmd.Env, "IPCFLOW_TEST_FIFO="+fifo)
	if code := fr.run(t); code != 0 || fr.stdout.String() != "hi\n" {
		t.Fatalf("exit status %d, stdout %q; stderr:\n%s", code, fr.stdout.String(), fr.stderr.Bytes())
	}
	if got, err := os.ReadFile(fifo); err != nil || string(got) != "mine\n" {
		t.Errorf("the file that replaced the run's fifo: %q, %v; want it kept", got, err)
	}
}

// A run whose stage waits, so that it can be killed with its guardian.
func init() {
	testFlows["fifo-path-hold"] = func() *parser.Graph {
		b := newGraph()
		b.g.Params = []*parser.Param{{Name: "READY"}}
		b.stage("w", `touch "$READY"; exec sleep 1000`)
		b.stage("r", "cat")
		b.edge("w", "r", parser.FIFO, parser.Options{Path: os.Getenv("IPCFLOW_TEST_FIFO")})
		return b.g
	}
}

// crashRun runs fifo-path-hold with its fifo at fifo and kills ipcflow
// and its guardian together once the flow runs, as `kill -9 -1` would:
// nobody cleans up. It returns the run's XDG_RUNTIME_DIR.
func crashRun(t *testing.T, fifo string) string {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	fr := newFlowRun(t, "fifo-path-hold", "READY="+ready)
	fr.cmd.Env = append(fr.cmd.Env, "IPCFLOW_TEST_FIFO="+fifo)
	if err := fr.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !exists(ready); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the flow did not start; stderr:\n%s", fr.stderr.Bytes())
		}
	}
	// Stopped first, so the guardian cannot see ipcflow die and clean.
	// Again until none is left: the stage shell may have started its
	// sleep after the list was read (an orphan that would hold the
	// test's stderr pipe, and its Wait, for good).
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		procs := testkit.MarkedProcs(fr.mark)
		if len(procs) == 0 {
			break
		}
		for _, pid := range procs {
			syscall.Kill(pid, syscall.SIGSTOP)
		}
		for _, pid := range procs {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	fr.cmd.Wait()
	testkit.WaitNoProcs(t, fr.mark, 5*time.Second)
	if !exists(fifo) {
		t.Fatal("the killed run's fifo is gone already: nothing left to test")
	}
	return fr.runDir
}

// cleanAs runs Clean for the runs under runDir (an XDG_RUNTIME_DIR).
func cleanAs(t *testing.T, runDir string) (string, error) {
	t.Helper()
	t.Setenv("XDG_RUNTIME_DIR", runDir)
	var out bytes.Buffer
	err := rundir.Clean(&out, false)
	return out.String(), err
}

// After a crash the fifo's name is given to a file of another user: clean
// (as root) removes the dead run but keeps that file.
func TestCleanKeepsAFileThatReplacedAFifo(t *testing.T) {
	uid, gid := otherUser(t)
	dir := filepath.Join(sharedDir(t), "theirs")
	os.Mkdir(dir, 0o755)
	os.Chown(dir, uid, gid)
	fifo := filepath.Join(dir, "x.fifo")
	runDir := crashRun(t, fifo)
	if err := os.Remove(fifo); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fifo, []byte("theirs\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chown(fifo, uid, gid)
	out, err := cleanAs(t, runDir)
	if got, rerr := os.ReadFile(fifo); rerr != nil || string(got) != "theirs\n" {
		t.Fatalf("clean removed another user's file that took the dead run's fifo name (%v); it said:\n%s", rerr, out)
	}
	if err != nil || !strings.Contains(out, "kept file "+fifo) || !strings.Contains(out, "removed run directory") {
		t.Errorf("clean: %v; said:\n%s", err, out)
	}
}

// After a crash the fifo's directory becomes a symlink to another one
// that holds a file of the same name: clean removes neither.
func TestCleanDoesNotFollowASwappedDirectory(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "d")
	os.Mkdir(dir, 0o700)
	fifo := filepath.Join(dir, "x.fifo")
	runDir := crashRun(t, fifo)
	other := filepath.Join(base, "other")
	os.Mkdir(other, 0o700)
	victim := filepath.Join(other, "x.fifo")
	if err := os.WriteFile(victim, []byte("keep me\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir, filepath.Join(base, "d.old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(other, dir); err != nil {
		t.Fatal(err)
	}
	out, _ := cleanAs(t, runDir)
	if !exists(victim) {
		t.Fatalf("clean followed a symlinked directory and removed %s; it said:\n%s", victim, out)
	}
	if !strings.Contains(out, "kept file "+fifo) {
		t.Errorf("clean did not say it kept %s:\n%s", fifo, out)
	}
}

// Another user makes this user's run directory base first, in a shared
// temp directory, with a "dead run" whose manifest lists a file of ours:
// clean refuses the base and removes nothing.
func TestCleanRefusesABaseAnotherUserMade(t *testing.T) {
	uid, gid := otherUser(t)
	tmp := sharedDir(t)
	t.Setenv("TMPDIR", tmp)
	t.Setenv("XDG_RUNTIME_DIR", "")
	victim := filepath.Join(t.TempDir(), "precious")
	if err := os.WriteFile(victim, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(tmp, "ipcflow-"+strconv.Itoa(os.Getuid()))
	run := filepath.Join(base, "0123456789abcdef")
	os.MkdirAll(run, 0o700)
	os.WriteFile(filepath.Join(run, "manifest"), []byte("pid\t1\nfile\t"+victim+"\n"), 0o600)
	for _, p := range []string{base, run, filepath.Join(run, "manifest")} {
		os.Chown(p, uid, gid)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(run, old, old)
	var out bytes.Buffer
	err := rundir.Clean(&out, false)
	if !exists(victim) {
		t.Fatalf("clean removed %s, listed by another user's manifest; it said:\n%s", victim, out.String())
	}
	if err == nil || !strings.Contains(err.Error(), "belongs to uid "+strconv.Itoa(uid)) {
		t.Errorf("clean did not refuse the other user's base: %v", err)
	}
}
