package exec

import (
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// asOtherUser prepares the real ipcflow binary to run `run FILE` as the
// second user, in a shell that first runs limits (`ulimit -u 12; `), with
// a run directory base of its own that the test can check afterwards.
func asOtherUser(t *testing.T, limits, flow string) (cmd *osexec.Cmd, runDir string) {
	t.Helper()
	uid, gid := otherUser(t)
	bin := ipcflowBinary(t)
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
	t.Cleanup(leakCheck(t, runDir))
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
