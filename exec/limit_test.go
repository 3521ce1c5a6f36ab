package exec

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipcflow/ipcflow/internal/testkit"
	"github.com/ipcflow/ipcflow/isolate"
	"github.com/ipcflow/ipcflow/parser"
)

// limitCgroups lists the run cgroups of limited stages left in the v1
// hierarchies: none may outlive a run.
func limitCgroups(t *testing.T) []string {
	t.Helper()
	ms, err := isolate.Plan(&parser.Limits{Memory: 1 << 20, CPU: 1, Pids: 1})
	if err != nil {
		return nil
	}
	var left []string
	for _, m := range ms {
		ents, _ := os.ReadDir(m.Cgroup)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "ipcflow.") && strings.Contains(e.Name(), ".limit-") {
				left = append(left, filepath.Join(m.Cgroup, e.Name()))
			}
		}
	}
	return left
}

// A stage that allocates 400 MiB under a 64 MiB memory limit is killed,
// and the report names the limit (read from the group's OOM count, not
// guessed from the SIGKILL); a stage under its limits runs as without.
func TestMemoryLimitKills(t *testing.T) {
	if _, err := isolate.Plan(&parser.Limits{CPU: 1}); err != nil {
		t.Skip("no cgroup v1 memory and cpu controllers this user may write: ", err)
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	bin := testkit.BuildIpcflow(t)
	before := len(limitCgroups(t))
	code, _, errb := restartRun(t, bin, `stage r limit memory=64MiB = bash -c 'x=$(head -c 400M /dev/zero | tr "\0" a); echo survived'`+"\n")
	if code != 137 || !bytes.Contains(errb, []byte("ipcflow: stage r: killed: memory limit 64MiB\n")) {
		t.Fatalf("exit status %d, stderr %q; want 137 and the limit named", code, errb)
	}
	// Killed for its limit, it restarts if its policy says so.
	code, _, errb = restartRun(t, bin, `stage r restart on-failure max 1 backoff 10ms limit memory=64MiB = bash -c 'x=$(head -c 400M /dev/zero | tr "\0" a)'`+"\n")
	if code != 137 || !bytes.Contains(errb, []byte("stage r: killed: memory limit 64MiB; restarting in 10ms (restart 1)\n")) ||
		!bytes.Contains(errb, []byte("stage r: killed: memory limit 64MiB (restarted 1 time;")) {
		t.Fatalf("restart after the limit: exit status %d, stderr %q", code, errb)
	}
	code, out, errb := restartRun(t, bin, "stage ok limit memory=64MiB, cpu=0.5, pids=20, files=64 = seq 1 1000\n")
	if code != 0 || !bytes.Equal(out, seqLines(1000)) || len(errb) > 0 {
		t.Fatalf("under its limits: exit status %d, %d bytes, stderr %q", code, len(out), errb)
	}
	if left := limitCgroups(t); len(left) > before {
		t.Errorf("cgroups left: %v", left)
	}
}

// pids and files are enforced: a stage cannot open more files than its
// limit (RLIMIT_NOFILE), and cannot fork past its pids limit.
func TestPidsAndFilesLimits(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	bin := testkit.BuildIpcflow(t)
	code, out, _ := restartRun(t, bin, "stage f limit files=16 = bash -c 'ulimit -n'\n")
	if code != 0 || string(out) != "16\n" {
		t.Errorf("files=16: exit %d, ulimit -n says %q", code, out)
	}
	// sh, not bash: bash retries a failed fork for seconds, and one-second
	// sleeps ending meanwhile on a loaded machine let it through. The
	// sleeps outlast any retry; dash gives up at once.
	code, _, errb := restartRun(t, bin, "stage p limit pids=3 = sh -c 'for i in 1 2 3 4 5 6; do sleep 30 & done; wait'\n")
	if code == 0 {
		t.Errorf("pids=3: six background sleeps all started (stderr %q)", errb)
	}
}

// --dry-run says what enforces each limit.
func TestDryRunSaysHowLimited(t *testing.T) {
	bin := testkit.BuildIpcflow(t)
	script := filepath.Join(t.TempDir(), "f.ipcflow")
	os.WriteFile(script, []byte("stage a limit files=64 = true\n"), 0o600)
	out, err := exec.Command(bin, "run", "--dry-run", script).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("limit files=64 by setrlimit RLIMIT_NOFILE")) {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
}

// A SIGKILL of ipcflow while a limited stage runs leaves neither the
// stage nor its cgroups: they are in the manifest, and the guardian
// removes them.
func TestLimitGroupsGoAfterSigkill(t *testing.T) {
	if _, err := isolate.Plan(&parser.Limits{CPU: 1}); err != nil {
		t.Skip("no cgroup v1 controllers this user may write: ", err)
	}
	before := len(limitCgroups(t))
	cmd, _, _, check := startFlow(t, "stage s limit memory=64MiB, pids=10 = sleep 30\n")
	deadline := time.Now().Add(5 * time.Second)
	for len(limitCgroups(t)) == before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(limitCgroups(t)) == before {
		t.Fatal("the stage's cgroups never appeared")
	}
	cmd.Process.Kill()
	cmd.Wait()
	for len(limitCgroups(t)) > before && time.Now().Before(deadline.Add(5*time.Second)) {
		time.Sleep(20 * time.Millisecond)
	}
	if left := limitCgroups(t); len(left) > before {
		t.Errorf("cgroups left after a SIGKILL of ipcflow: %v", left)
	}
	check()
}
