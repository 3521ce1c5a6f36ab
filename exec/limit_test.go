package exec

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipcflow/ipcflow/contain"
	"github.com/ipcflow/ipcflow/internal/testkit"
	"github.com/ipcflow/ipcflow/isolate"
	"github.com/ipcflow/ipcflow/parser"
)

// runPlace is where runs make their cgroup here, nil where nowhere.
func runPlace() *contain.Place {
	if p, ok := contain.Find(); ok {
		return &p
	}
	return nil
}

// limitCgroups lists the cgroups of limited stages left in the v1
// hierarchies, and in v2 inside the runs' groups: none may outlive a
// run.
func limitCgroups(t *testing.T) []string {
	t.Helper()
	var dirs []string
	if ms, err := isolate.Plan(&parser.Limits{Memory: 1 << 20, CPU: 1, Pids: 1}, nil); err == nil {
		for _, m := range ms {
			dirs = append(dirs, m.Cgroup)
		}
	}
	if p := runPlace(); p != nil && p.Version == contain.V2 {
		runs, _ := filepath.Glob(filepath.Join(p.Parent, "ipcflow.*.procs"))
		dirs = append(dirs, runs...)
	}
	var left []string
	for _, dir := range dirs {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "ipcflow.") && strings.Contains(e.Name(), ".limit-") {
				left = append(left, filepath.Join(dir, e.Name()))
			}
		}
	}
	return left
}

// strayLimitCgroups is limitCgroups less the groups of runs still alive
// (other tests', other packages' meanwhile), but for the runs own: what a
// run left behind, or what the test's own run still has.
func strayLimitCgroups(t *testing.T, own ...string) []string {
	t.Helper()
	live := testkit.LiveRunIDs()
	var stray []string
	for _, g := range limitCgroups(t) {
		// ipcflow.<id>.limit-<stage>.procs
		if parts := strings.Split(filepath.Base(g), "."); len(parts) < 2 || !live[parts[1]] || slices.Contains(own, parts[1]) {
			stray = append(stray, g)
		}
	}
	return stray
}

// A stage that allocates 400 MiB under a 64 MiB memory limit is killed,
// and the report names the limit (read from the group's OOM count, not
// guessed from the SIGKILL); a stage under its limits runs as without.
func TestMemoryLimitKills(t *testing.T) {
	if _, err := isolate.Plan(&parser.Limits{CPU: 1}, nil); err != nil {
		t.Skip("no cgroup v1 memory and cpu controllers this user may write: ", err)
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	bin := testkit.BuildIpcflow(t)
	before := len(strayLimitCgroups(t))
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
	if left := strayLimitCgroups(t); len(left) > before {
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
	ms, err := isolate.Plan(&parser.Limits{Memory: 1 << 20, Pids: 1}, runPlace())
	if err != nil || ms[0].Rlimit != 0 || ms[1].Rlimit != 0 {
		t.Skip("no cgroup memory and pids controllers this user may write (v2 or v1)")
	}
	before, strayBefore := len(limitCgroups(t)), len(strayLimitCgroups(t))
	cmd, _, runBase, check := startFlow(t, "stage s limit memory=64MiB, pids=10 = sleep 30\n")
	deadline := time.Now().Add(5 * time.Second)
	for len(limitCgroups(t)) == before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(limitCgroups(t)) == before {
		t.Fatal("the stage's cgroups never appeared")
	}
	runs, _ := os.ReadDir(filepath.Join(runBase, "ipcflow"))
	if len(runs) != 1 {
		t.Fatalf("run directories %v, want the run's one", runs)
	}
	own := runs[0].Name()
	if len(strayLimitCgroups(t, own)) == strayBefore {
		t.Fatal("the run's groups are not told by its id")
	}
	cmd.Process.Kill()
	cmd.Wait()
	for len(strayLimitCgroups(t, own)) > strayBefore && time.Now().Before(deadline.Add(5*time.Second)) {
		time.Sleep(20 * time.Millisecond)
	}
	if left := strayLimitCgroups(t, own); len(left) > strayBefore {
		t.Errorf("cgroups left after a SIGKILL of ipcflow: %v", left)
	}
	check()
}

// On cgroup v2 with a memory controller for the run's group: --dry-run
// says the limit is cgroup v2's memory.max; a stage that allocates 400
// MiB under 64 MiB is killed and the report names the limit (from
// memory.events' oom_kill count); a stage under its limits runs in its
// own group, a child of the run's, and the others in the run's leaf;
// nothing is left. Skips, saying why, where v2 has no memory controller
// for the run's group (these machines bind every controller to v1).
func TestMemoryLimitV2(t *testing.T) {
	p := runPlace()
	if p == nil {
		t.Skip("no cgroup v2 memory controller here: no cgroup this user may write")
	}
	if err := p.Offers("memory"); err != nil {
		t.Skipf("no cgroup v2 memory controller here: %v", err)
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	bin := testkit.BuildIpcflow(t)
	script := filepath.Join(t.TempDir(), "f.ipcflow")
	os.WriteFile(script, []byte("stage r limit memory=64MiB, pids=20 = true\n"), 0o600)
	out, err := exec.Command(bin, "run", "--dry-run", script).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("limit memory=64MiB by cgroup v2 memory.max")) {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	before := len(strayLimitCgroups(t))
	code, _, errb := restartRun(t, bin, `stage r limit memory=64MiB = bash -c 'x=$(head -c 400M /dev/zero | tr "\0" a); echo survived'`+"\n")
	if code != 137 || !bytes.Contains(errb, []byte("ipcflow: stage r: killed: memory limit 64MiB\n")) {
		t.Fatalf("exit status %d, stderr %q; want 137 and the limit named", code, errb)
	}
	code, out, errb = restartRun(t, bin, "stage ok limit memory=64MiB, pids=20 = cat /proc/self/cgroup\nstage other after ok = cat /proc/self/cgroup\n")
	if code != 0 || len(errb) > 0 {
		t.Fatalf("under its limits: exit status %d, stderr %q", code, errb)
	}
	var groups []string
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			groups = append(groups, rest)
		}
	}
	if len(groups) != 2 || !strings.HasSuffix(groups[0], ".limit-ok.procs") || !strings.HasSuffix(groups[1], "/"+contain.LeafName) ||
		filepath.Dir(groups[0]) != filepath.Dir(groups[1]) {
		t.Errorf("v2 groups of the limited stage and the other: %q; want the stage's own and the leaf, in the run's group", groups)
	}
	if left := strayLimitCgroups(t); len(left) > before {
		t.Errorf("cgroups left: %v", left)
	}
}

// A limited stage runs a script without a #! line as an unlimited one
// does: with sh (isolate.Enter does the shell's ENOEXEC fallback itself,
// since exec's own runs only when the stage's first exec fails).
func TestLimitedScriptWithoutShebang(t *testing.T) {
	bin := testkit.BuildIpcflow(t)
	script := filepath.Join(t.TempDir(), "s")
	if err := os.WriteFile(script, []byte("echo \"got $1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	code, out, errb := restartRun(t, bin, "stage s limit files=64 = "+script+" one\n")
	if code != 0 || string(out) != "got one\n" {
		t.Errorf("exit status %d, stdout %q, want 0 and \"got one\\n\"; stderr:\n%s", code, out, errb)
	}
}

// A pids limit counts the stage's programs, not ipcflow's own stage
// shell or replica runner, whose Go runtime has threads the kernel counts
// too and dies with a stack trace when it may not make one: a stage shell
// of two builtins runs as bash does at pids=3 and pids=1; one that starts
// more background programs than the limit ends with its own one line
// about the fork, no trace; a replicated stage's copies run under it.
func TestPidsLimitHelpers(t *testing.T) {
	if _, ok := contain.V1Own("pids"); !ok {
		t.Skip("no cgroup v1 pids controller this user may write")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	bin := testkit.BuildIpcflow(t)
	noTrace := func(what string, errb []byte) {
		t.Helper()
		if bytes.Contains(errb, []byte("goroutine")) || bytes.Contains(errb, []byte("runtime")) {
			t.Errorf("%s: a Go stack trace:\n%s", what, errb)
		}
	}
	want, err := exec.Command("bash", "-c", "echo hi; echo there").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"3", "1"} {
		code, out, errb := restartRun(t, bin, "stage p limit pids="+n+" = echo hi; echo there\n")
		if code != 0 || string(out) != string(want) {
			t.Errorf("pids=%s: exit %d, output %q, want 0 and bash's %q (stderr %q)", n, code, out, want, errb)
		}
		noTrace("pids="+n, errb)
	}
	code, out, errb := restartRun(t, bin, "stage p limit pids=3 = for i in 1 2 3; do sleep 1 & done; wait; echo ok\n")
	if code != 0 || string(out) != "ok\n" {
		t.Errorf("pids=3, three background sleeps: exit %d, output %q (stderr %q)", code, out, errb)
	}
	noTrace("pids=3, three sleeps", errb)
	code, out, errb = restartRun(t, bin, "stage p limit pids=3 = for i in 1 2 3 4 5 6; do sleep 30 & done; wait; echo all\n")
	lines := strings.Split(strings.TrimSpace(string(errb)), "\n")
	if code == 0 || len(out) != 0 || !strings.Contains(lines[0], "sleep: cannot fork: the stage's limit pids=3 is reached") {
		t.Errorf("pids=3, six background sleeps: exit %d, output %q, stderr %q; want a failure and the fork's line", code, out, errb)
	}
	noTrace("pids=3, six sleeps", errb)
	for _, cmd := range []string{"cat", "cat; true"} {
		code, out, errb = restartRun(t, bin, "stage s = seq 1 5\nstage w[2] limit pids=3 = "+cmd+"\nstage o = sort -n\ns -> w -> o\n")
		if code != 0 || string(out) != "1\n2\n3\n4\n5\n" {
			t.Errorf("w[2] limit pids=3 = %s: exit %d, output %q (stderr %q)", cmd, code, out, errb)
		}
		noTrace("w[2] = "+cmd, errb)
	}
}

// A copy of a replicated stage killed by the stage's memory limit is
// named so in its restart line, as a plain stage is (the runner reads the
// group's OOM count, IPCFLOW_OOM_WATCH).
func TestReplicaCopyKilledForItsLimit(t *testing.T) {
	if _, err := isolate.Plan(&parser.Limits{CPU: 1}, nil); err != nil {
		t.Skip("no cgroup v1 memory and cpu controllers this user may write: ", err)
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	bin := testkit.BuildIpcflow(t)
	code, _, errb := restartRun(t, bin, `stage src = printf "a\nb\n"
stage w[2] unordered restart on-failure max 1 backoff 10ms limit memory=64MiB = bash -c 'cat >/dev/null; x=$(head -c 400M /dev/zero | tr "\0" a)'
src -> w
`)
	if code != 137 || !regexp.MustCompile(`copy w\[[01]\]: killed: memory limit 64MiB; restarting in 10ms \(restart 1\)`).Match(errb) ||
		bytes.Contains(errb, []byte("killed by signal SIGKILL")) {
		t.Errorf("exit status %d, stderr:\n%s\nwant 137 and each copy's end named as the limit", code, errb)
	}
}
