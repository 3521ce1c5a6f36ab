package exec

import (
	"bytes"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/internal/testkit"
	"github.com/ipcflow/ipcflow/parser"
)

// asOtherUser prepares the real ipcflow binary to run `run FILE` as the
// second user, in a shell that first runs limits (`ulimit -u 12; `), with
// a run directory base of its own that the test can check afterwards.
func asOtherUser(t *testing.T, limits, flow string) (cmd *osexec.Cmd, runDir string) {
	t.Helper()
	uid, gid := otherUser(t)
	bin := testkit.BuildIpcflow(t)
	os.Chmod(filepath.Dir(bin), 0o755) // MkdirTemp made it 0700: root's alone
	dir := sharedDir(t)
	file := filepath.Join(dir, "flow.ipcflow")
	if err := os.WriteFile(file, []byte(flow), 0o644); err != nil {
		t.Fatal(err)
	}
	runDir = filepath.Join(dir, "xdg")
	os.Mkdir(runDir, 0o700)
	os.Chown(runDir, uid, gid)
	cmd = osexec.Command("bash", "-c", limits+`exec "$0" run "$1"`, bin, file)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "XDG_RUNTIME_DIR=" + runDir, "TMPDIR=" + dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	t.Cleanup(testkit.LeakCheck(t, runDir))
	return cmd, runDir
}

const eightStages = `stage a = seq 1 100
stage b = cat
stage c = cat
stage d = cat
stage e = cat
stage f = cat
stage g = cat
stage h = wc -l
a -> b -> c -> d -> e -> f -> g -> h
`

// A flow that cannot get its processes under `ulimit -u` is refused with
// one line naming the limit, exit 2, before anything starts: not a stage
// that fails half-way, nor the Go runtime's fatal "failed to create new OS
// thread" with a goroutine dump.
func TestProcessLimitRefusedUpFront(t *testing.T) {
	uid, _ := otherUser(t)
	// ipcflow itself must be able to start (the Go runtime needs about
	// five threads before any of ipcflow's code runs); the flow needs more.
	for _, room := range []int{6, 8, 12} {
		t.Run(strconv.Itoa(room), func(t *testing.T) {
			limit := userTasks(uid) + int64(room)
			cmd, runDir := asOtherUser(t, "ulimit -u "+strconv.FormatInt(limit, 10)+"; ", eightStages)
			out, err := cmd.CombinedOutput()
			code := exitCode(t, err)
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if code != StatusUsage || len(lines) != 1 || !strings.Contains(lines[0], "ulimit -u") {
				t.Fatalf("exit status %d, want %d with one line naming ulimit -u; output:\n%s", code, StatusUsage, out)
			}
			if ents, _ := os.ReadDir(filepath.Join(runDir, "ipcflow")); len(ents) != 0 {
				t.Errorf("run directory left: %v", ents)
			}
		})
	}
}

// A flow whose edges need more fds than `ulimit -n` leaves is refused
// with one line naming the limit, exit 2, and nothing is left.
func TestOpenFileLimitRefusedUpFront(t *testing.T) {
	for _, limit := range []string{"8", "12", "20"} {
		t.Run(limit, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "flow.ipcflow")
			if err := os.WriteFile(file, []byte(eightStages), 0o644); err != nil {
				t.Fatal(err)
			}
			runDir := t.TempDir()
			t.Cleanup(testkit.LeakCheck(t, runDir))
			cmd := osexec.Command("bash", "-c", "ulimit -n "+limit+`; exec "$0" run "$1"`, testkit.BuildIpcflow(t), file)
			cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runDir)
			out, err := cmd.CombinedOutput()
			code := exitCode(t, err)
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if code != StatusUsage || len(lines) != 1 || !strings.Contains(lines[0], "ulimit -n") {
				t.Fatalf("exit status %d, want %d with one line naming ulimit -n; output:\n%s", code, StatusUsage, out)
			}
			if ents, _ := os.ReadDir(filepath.Join(runDir, "ipcflow")); len(ents) != 0 {
				t.Errorf("run directory left: %v", ents)
			}
		})
	}
	// A user held to the pipe budget (root is not) has it probed with
	// pipes, which fail for want of fds: that is no news of the budget,
	// and must not print a warning of a pipe budget used up.
	t.Run("another user", func(t *testing.T) {
		cmd, _ := asOtherUser(t, "ulimit -n 8; ", eightStages)
		out, err := cmd.CombinedOutput()
		code := exitCode(t, err)
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if code != StatusUsage || len(lines) != 1 || !strings.Contains(lines[0], "ulimit -n") {
			t.Fatalf("exit status %d, want %d with one line naming ulimit -n; output:\n%s", code, StatusUsage, out)
		}
	})
}

func init() {
	testFlows["one-mq"] = func() *parser.Graph {
		b := newGraph()
		b.stage("a", "seq 1 1000")
		b.stage("b", "cat")
		b.edge("a", "b", parser.MQ)
		return b.g
	}
}

// withSoftLimit lowers a soft rlimit for the rest of the test (children
// inherit it); the hard limit stays, so it can be restored.
func withSoftLimit(t *testing.T, resource int, cur uint64) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(resource, &old); err != nil {
		t.Fatal(err)
	}
	lowered := old
	lowered.Cur = cur
	if err := syscall.Setrlimit(resource, &lowered); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Setrlimit(resource, &old) })
}

// One mq edge of default size under a `ulimit -q` below that size shrinks
// to fit, as docs/transports.md says unset options do, and as two do.
func TestOneMQEdgeShrinksToFitUlimitQ(t *testing.T) {
	if os.Getuid() == 0 {
		// As another user where it can: RLIMIT_MSGQUEUE counts all of a
		// user's queues, and go test runs channels' tests, which make
		// many, beside this one.
		cmd, _ := asOtherUser(t, "ulimit -q 50000; ", "stage a = seq 1 1000\nstage b = cat\na -[mq]-> b\n")
		out, err := cmd.Output()
		if code := exitCode(t, err); code != 0 || !bytes.Equal(out, testkit.Bash(t, "seq 1 1000")) {
			t.Fatalf("exit status %d under ulimit -q 50000, stdout %d bytes", code, len(out))
		}
		return
	}
	withSoftLimit(t, unix.RLIMIT_MSGQUEUE, 50000)
	fr := newFlowRun(t, "one-mq")
	if code := fr.run(t); code != 0 {
		t.Fatalf("exit status %d under ulimit -q 50000; stderr:\n%s", code, fr.stderr.Bytes())
	}
	if want := testkit.Bash(t, "seq 1 1000"); !bytes.Equal(fr.stdout.Bytes(), want) {
		t.Errorf("stdout: %d bytes, want %d", fr.stdout.Len(), len(want))
	}
}

func init() {
	testFlows["mmap-record-seq"] = func() *parser.Graph {
		b := newGraph()
		b.g.Params = []*parser.Param{{Name: "N"}}
		b.stage("a", `seq 1 "$N"`)
		b.stage("b", "wc -c")
		b.edge("a", "b", parser.MMap, parser.Options{Path: os.Getenv("IPCFLOW_TEST_REC")})
		return b.g
	}
}

// smallFS mounts a fresh 2 MiB tmpfs for the test (root only).
func smallFS(t *testing.T) string {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to mount a small file system")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=2m"); err != nil {
		t.Skipf("mount a 2 MiB tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// An mmap recording grows with its stream: 1.6 MB fit on a 2 MiB file
// system. A stream that does not fit fails with one line naming the edge
// and the lack of space, and leaves no recording (the next run would
// fail: "already exists").
func TestMmapRecordingOnASmallFileSystem(t *testing.T) {
	fs := smallFS(t)
	rec := filepath.Join(fs, "rec")
	fr := newFlowRun(t, "mmap-record-seq", "N=250000")
	fr.cmd.Env = append(fr.cmd.Env, "IPCFLOW_TEST_REC="+rec)
	want := testkit.Bash(t, "seq 1 250000")
	if code := fr.run(t); code != 0 || strings.TrimSpace(fr.stdout.String()) != strconv.Itoa(len(want)) {
		t.Fatalf("exit status %d, consumer counted %q bytes, want %d; stderr:\n%s", code, fr.stdout.String(), len(want), fr.stderr.Bytes())
	}
	if got, err := os.ReadFile(rec); err != nil || !bytes.Equal(got, want) {
		t.Errorf("recording: %d bytes (%v), want %d", len(got), err, len(want))
	}
	os.Remove(rec)

	fr = newFlowRun(t, "mmap-record-seq", "N=400000")
	fr.cmd.Env = append(fr.cmd.Env, "IPCFLOW_TEST_REC="+rec)
	code := fr.run(t)
	lines := strings.Split(strings.TrimSpace(fr.stderr.String()), "\n")
	if code == 0 || len(lines) != 1 || !strings.Contains(lines[0], "edge e1") || !strings.Contains(lines[0], "no space left") {
		t.Errorf("a stream too big for the file system: exit status %d, stderr:\n%s", code, fr.stderr.Bytes())
	}
	if _, err := os.Lstat(rec); !os.IsNotExist(err) {
		t.Errorf("the failed recording %s was left (%v)", rec, err)
	}
}

// A user whose limits fall back to setrlimit (no cgroup of theirs) may
// limit a stage run by the stage shell: the limits are its programs',
// not the Go stage shell's. Under RLIMIT_AS 64 MiB the shell died at its
// start with Go's "failed to reserve page summary memory" and a stack
// trace; under RLIMIT_NOFILE 5 it could not open what bash opens.
func TestSetrlimitLimitsOnShellStages(t *testing.T) {
	cmd, _ := asOtherUser(t, "", `stage a limit memory=64MiB = echo hi; echo there
stage b limit memory=64MiB = dd if=/dev/zero of=/dev/null bs=300M count=1 2>/dev/null && echo not limited || echo limited
stage c limit files=5 = echo b1; cat /etc/hostname > /dev/null && echo read
stage d = cat
a -> d
b.out -> d.in
c.out -> d.in
`)
	out, err := cmd.CombinedOutput()
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	slices.Sort(got)
	if code := exitCode(t, err); code != 0 || strings.Join(got, " ") != "b1 hi limited read there" {
		t.Errorf("status %d, output:\n%s\nwant hi, there, b1, read and limited (dd's 300 MB buffer refused)", code, out)
	}
}
