package exec

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipcflow/ipcflow/internal/testkit"
)

// Restarting one copy of a replicated stage (SPEC 11, 14; issue 20): the
// runner applies the stage's restart policy per copy. The copies fail
// once by construction: the first process to see a marker line makes a
// directory in the test's temp dir (mkdir is atomic) and fails; the
// directory being there, no later process does.

// replicaRestartRun runs flow with the real binary (args after the
// script, small blocks) as checkedRun does.
func replicaRestartRun(t *testing.T, flow string, args ...string) ([]byte, []byte, int) {
	t.Helper()
	return checkedRun(t, flow, nil, []string{smallBlocks}, args)
}

// copyStats is what --stats-json says of a replicated stage and its
// copies' restarts.
type copyStats struct {
	Restarts    int
	LastFailure string `json:"last_failure"`
	Replicas    []struct {
		Name        string
		Status      string
		Processes   int
		Restarts    int
		LastFailure string `json:"last_failure"`
	}
}

func readCopyStats(t *testing.T, path, stage string) copyStats {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Stages []struct {
			Name string
			copyStats
		}
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	for _, s := range rep.Stages {
		if s.Name == stage {
			return s.copyStats
		}
	}
	t.Fatalf("no stage %s in\n%s", stage, data)
	return copyStats{}
}

// Ordered: the block whose process fails on line 12345 runs again over
// the same block, its partial output dropped; the flow prints exactly
// what bash's unreplicated pipeline prints and exits 0, over pipes and
// over mq and shm edges in and out. --stats-json counts the restart on
// the stage and on the copy, which ran one process more than its blocks.
func TestReplicaRestartOrderedExact(t *testing.T) {
	want := testkit.Bash(t, `seq 1 20000 | awk '{print "x" $0}'`)
	for _, ty := range []string{"pipe", "mq", "shm"} {
		t.Run(ty, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			js := filepath.Join(dir, "stats.json")
			flow := fmt.Sprintf(`param D = x
stage a = seq 1 20000
stage g[3] restart on-failure backoff 20ms = awk -v d="$D" '/^12345$/ && system("mkdir " d "/m 2>/dev/null") == 0 { exit 5 } { print "x" $0 }'
stage b = cat
a -[%s]-> g -[%s]-> b
`, ty, ty)
			got, stderr, code := replicaRestartRun(t, flow, "--stats", "--stats-json", js, "D="+dir)
			if code != 0 || !bytes.Equal(got, want) {
				t.Fatalf("status %d, %d bytes (%.40q), want 0 and bash's %d\n%s", code, len(got), got, len(want), stderr)
			}
			for _, re := range []string{`(?m)^g ×3 +exit status 0; restarted once, last failure exit status 5 `,
				`(?m)^  g\[[0-2]\] +exit status 0 \([0-9]+ blocks\); restarted once, last failure exit status 5 `} {
				if !regexp.MustCompile(re).Match(stderr) {
					t.Errorf("the --stats table lacks %s:\n%s", re, stderr)
				}
			}
			if n := bytes.Count(stderr, []byte("exit status 5; restarting in 20ms (restart 1)")); n != 1 || !bytes.Contains(stderr, []byte("ipcflow: stage g: copy g[")) {
				t.Errorf("%d restarts reported, want 1 naming the copy and its block:\n%s", n, stderr)
			}
			st := readCopyStats(t, js, "g")
			if st.Restarts != 1 || st.LastFailure != "exit status 5" {
				t.Errorf("stage g: %d restarts, last failure %q; want 1 and exit status 5", st.Restarts, st.LastFailure)
			}
			restarted := 0
			for _, c := range st.Replicas {
				if c.Status != "exit status 0" {
					t.Errorf("%s: status %q, want exit status 0 (a restarted failure does not stick)", c.Name, c.Status)
				}
				if c.Restarts > 0 {
					restarted++
					if c.Restarts != 1 || c.LastFailure != "exit status 5" || c.Processes < 2 {
						t.Errorf("%s: %+v, want 1 restart after exit status 5", c.Name, c)
					}
				}
			}
			if restarted != 1 {
				t.Errorf("%d copies restarted, want 1: %+v", restarted, st.Replicas)
			}
		})
	}
}

// Unordered: the copy that takes line 12345 dies on it (bash's read takes
// one byte at a time from a pipe, so it has taken exactly that line) and
// comes back on the same input: the output is the input less that line,
// as a multiset, from the block feeders (pipe) and from the work queue
// (mq), where the new copy's feeder goes on taking messages.
func TestReplicaRestartUnordered(t *testing.T) {
	if _, err := osexec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed: the copies read with bash's byte-wise read")
	}
	const n = 20000
	var want bytes.Buffer
	for i := 1; i <= n; i++ {
		if i != 12345 {
			fmt.Fprintf(&want, "%d\n", i)
		}
	}
	for _, ty := range []string{"pipe", "mq"} {
		t.Run(ty, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			js := filepath.Join(dir, "stats.json")
			flow := fmt.Sprintf(`param D = x
stage a = seq 1 %d
stage g[3] unordered restart on-failure backoff 20ms = bash -c 'while IFS= read -r l; do if [ "$l" = 12345 ] && mkdir "$0/m" 2>/dev/null; then exit 5; fi; printf "%%s\n" "$l"; done' "$D"
stage b = cat
a -[%s]-> g -> b
`, n, ty)
			got, stderr, code := replicaRestartRun(t, flow, "--stats-json", js, "D="+dir)
			if code != 0 || !sameLines(got, want.Bytes()) {
				t.Fatalf("status %d, %d bytes: want 0 and the input less line 12345 (%d bytes), in any order\n%s", code, len(got), want.Len(), stderr)
			}
			if !bytes.Contains(stderr, []byte("]: exit status 5; restarting in 20ms (restart 1)")) {
				t.Errorf("stderr does not report the restart:\n%s", stderr)
			}
			st := readCopyStats(t, js, "g")
			if st.Restarts != 1 || st.LastFailure != "exit status 5" {
				t.Errorf("stage g: %d restarts, last failure %q; want 1 and exit status 5", st.Restarts, st.LastFailure)
			}
			for _, c := range st.Replicas {
				if wantP := 1 + c.Restarts; c.Status != "exit status 0" || c.Processes != wantP {
					t.Errorf("%s: %+v, want exit status 0 and %d processes", c.Name, c, wantP)
				}
			}
		})
	}
}

// merge: a copy of `wc -l` that fails once before reading anything comes
// back on the same input and the same output pipe: the merge command
// sees one stream per copy and the sum is the whole count.
func TestReplicaRestartMerge(t *testing.T) {
	dir := t.TempDir()
	flow := `param D = x
stage a = seq 1 200000
stage cnt[2] merge 'awk "{s+=\$1} END {print s}"' restart on-failure backoff 20ms = if mkdir "$D/m" 2>/dev/null; then exit 5; fi; exec wc -l
a -> cnt
`
	got, stderr, code := replicaRestartRun(t, flow, "D="+dir)
	if code != 0 || string(got) != "200000\n" {
		t.Fatalf("status %d, %q, want 0 and 200000\n%s", code, got, stderr)
	}
	if !bytes.Contains(stderr, []byte("]: exit status 5; restarting in 20ms (restart 1)")) {
		t.Errorf("stderr does not report the restart:\n%s", stderr)
	}
}

// The budget: copies that always fail with 7 under max 2 fail the stage
// with 7, in every mode, and the line that says so names the copy and
// its restarts.
func TestReplicaRestartBudgetSpent(t *testing.T) {
	for _, mode := range []string{"", "unordered", "merge cat"} {
		t.Run(cmpOr(mode, "ordered"), func(t *testing.T) {
			t.Parallel()
			flow := fmt.Sprintf("stage a = seq 1 2000\nstage g[3] %s restart on-failure max 2 backoff 10ms = exit 7\na -> g\n", mode)
			_, stderr, code := replicaRestartRun(t, flow)
			if code != 7 || !bytes.Contains(stderr, []byte("ipcflow: stage g: copy g[")) ||
				!bytes.Contains(stderr, []byte("exit status 7 (restarted 2 times; its restart budget of 2 within 1m0s is spent)\n")) {
				t.Errorf("status %d, want 7 and the copy's spent budget\n%s", code, stderr)
			}
		})
	}
}

// The exit status 1 rule is unchanged: grep's "nothing selected" in a
// copy's part is no failure, and no restart.
func TestReplicaRestartGrepStatus(t *testing.T) {
	in := replicaInputs()["text"]
	file := testkit.WriteTemp(t, "in", in)
	want := testkit.Bash(t, "grep 'line 777 of' "+file)
	for _, mode := range []string{"", "unordered", "merge cat"} {
		t.Run(cmpOr(mode, "ordered"), func(t *testing.T) {
			t.Parallel()
			flow := fmt.Sprintf("stage a = cat %s\nstage g[4] %s restart on-failure = grep 'line 777 of'\na -> g\n", file, mode)
			got, stderr, code := replicaRestartRun(t, flow)
			if code != 0 || !bytes.Equal(got, want) || bytes.Contains(stderr, []byte("restart")) {
				t.Errorf("status %d, %q, want 0, %q and no restart\n%s", code, got, want, stderr)
			}
		})
	}
}

// SIGTERM to ipcflow while a copy waits out its back-off: 143, nothing
// started after, nothing left.
func TestReplicaRestartSigtermDuringBackoff(t *testing.T) {
	bin := testkit.BuildIpcflow(t)
	for _, mode := range []string{"", "unordered"} {
		t.Run(cmpOr(mode, "ordered"), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			starts := filepath.Join(dir, "starts")
			script := filepath.Join(dir, "f.ipcflow")
			os.WriteFile(script, []byte(fmt.Sprintf("param M = x\nstage a = seq 1 2000\nstage g[2] %s restart on-failure backoff 20s = echo start >> \"$M\"; exit 7\na -> g\n", mode)), 0o600)
			runBase := t.TempDir()
			check := testkit.LeakCheck(t, runBase)
			mark := fmt.Sprintf("rrestart-term-%d-%d", os.Getpid(), time.Now().UnixNano())
			cmd := osexec.Command(bin, "run", script, "M="+starts)
			cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runBase, "IPCFLOW_TEST_MARK="+mark)
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, _ := bufio.NewReader(stderr).ReadString('\n')
			if !strings.Contains(line, "restarting in 20s") {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("first line %q, want a copy's restart", line)
			}
			cmd.Process.Signal(syscall.SIGTERM)
			if code := exitCode(t, cmd.Wait()); code != 143 {
				t.Errorf("exit status %d after SIGTERM, want 143", code)
			}
			testkit.WaitNoProcs(t, mark, 5*time.Second)
			check()
			// One start per copy (ordered: the one block's), none after.
			if data, _ := os.ReadFile(starts); bytes.Count(data, []byte("start\n")) < 1 || bytes.Count(data, []byte("start\n")) > 2 {
				t.Errorf("starts %q, want one per copy", data)
			}
		})
	}
}

// --dry-run says the policy applies per copy, and how.
func TestReplicaRestartDryRun(t *testing.T) {
	bin := testkit.BuildIpcflow(t)
	script := testkit.WriteTemp(t, "f.ipcflow", []byte("stage g[4] unordered restart on-failure max 3 backoff 50ms = cat\nstdin -> g\n"))
	out, err := osexec.Command(bin, "run", "--dry-run", script).CombinedOutput()
	if want := "      restart on-failure per copy, by the runner (max 3 within 1m0s, back-off 50ms doubling to 30s): a copy that failed starts again"; err != nil || !bytes.Contains(out, []byte(want)) {
		t.Errorf("--dry-run (%v) lacks %q:\n%s", err, want, out)
	}
}

// Ordered: a block takes a free copy slot, never one whose process still
// runs. Block 0 is held until block 2 has run; blocks 1 and 2 finish
// meanwhile. Block 2 used to take slot 2%2 = 0, block 0's, while block 0
// still ran there (two processes in one slot of the copy table, one
// restart budget). Now slot 0 runs block 0 alone and slot 1 the others.
func TestReplicaOrderedFreeSlot(t *testing.T) {
	dir := t.TempDir()
	var in bytes.Buffer
	for i := range 256 { // 64-byte lines: 4 blocks of 4 KiB
		mark := "-"
		switch i {
		case 0:
			mark = "A" // block 0: held until the flag is there
		case 160:
			mark = "Z" // block 2: makes the flag
		}
		fmt.Fprintf(&in, "%s%062d\n", mark, i)
	}
	script := testkit.WriteTemp(t, "copy.sh", []byte(fmt.Sprintf(`d=$(cat)
case $d in A*) until [ -e %[1]s/z ]; do sleep 0.01; done;; esac
case $d in *Z*) : > %[1]s/z;; esac
printf '%%s\n' "$d"
`, dir)))
	file := testkit.WriteTemp(t, "in", in.Bytes())
	js := filepath.Join(dir, "stats.json")
	flow := fmt.Sprintf("stage a = cat %s\nstage g[2] = sh %s\nstage b = cat\na -> g -> b\n", file, script)
	got, stderr, code := checkedRun(t, flow, nil, []string{smallBlocks}, []string{"--stats-json", js})
	if code != 0 || !bytes.Equal(got, in.Bytes()) {
		t.Fatalf("status %d, %d bytes, want 0 and the input's %d\n%s", code, len(got), in.Len(), stderr)
	}
	st := readCopyStats(t, js, "g")
	if len(st.Replicas) != 2 || st.Replicas[0].Processes != 1 || st.Replicas[1].Processes != 3 {
		t.Errorf("copies %+v, want g[0] to run block 0 alone and g[1] blocks 1 to 3", st.Replicas)
	}
}

// Under `restart always` a copy that exits 1 before its input ended is
// restarted, but exit 1 is no failure (the exit status 1 rule): the copy
// table counts the restart and records no last failure, as the runner
// judged it (it used to say "last failure exit status 1"). The input
// ends only once the restarted process has begun.
func TestReplicaRestartAlwaysExit1NoFailure(t *testing.T) {
	dir := t.TempDir()
	script := testkit.WriteTemp(t, "copy.sh", []byte(fmt.Sprintf(`mkdir %[1]s/m 2>/dev/null && exit 1
[ "$IPCFLOW_RESTARTS" = 1 ] && : > %[1]s/r
exec cat
`, dir)))
	js := filepath.Join(dir, "stats.json")
	flow := fmt.Sprintf(`stage a = sh -c 'until [ -e %s/r ]; do sleep 0.01; done; seq 1 20000'
stage g[2] unordered restart always backoff 20ms = sh %s
a -> g
`, dir, script)
	got, stderr, code := replicaRestartRun(t, flow, "--stats-json", js)
	want := testkit.Bash(t, "seq 1 20000")
	if code != 0 || !sameLines(got, want) || !bytes.Contains(stderr, []byte("exit status 1; restarting in 20ms (restart 1)")) {
		t.Fatalf("status %d, %d bytes, want 0, seq's lines and one restart\n%s", code, len(got), stderr)
	}
	st := readCopyStats(t, js, "g")
	if st.Restarts != 1 || st.LastFailure != "" {
		t.Errorf("stage g: %d restarts, last failure %q; want 1 and none", st.Restarts, st.LastFailure)
	}
	for _, c := range st.Replicas {
		if c.LastFailure != "" || c.Status != "exit status 0" {
			t.Errorf("%s: %+v, want exit status 0 and no last failure", c.Name, c)
		}
	}
}

// restart always over long-lived copies that exit 0 before their input
// ends: the feeder hands out every block early (the input fits in the
// copies' pipes), and a copy whose pipe still holds bytes is restarted
// until it is drained. Every line comes out exactly once, in any order,
// as bash's unreplicated loop restarted prints them, and the stage exits
// 0; in unordered and merge mode, over a pipe and an mq edge. -long adds
// the user's case: 1000000 lines, copies exiting after 100000.
func TestReplicaRestartAlwaysDrainsInput(t *testing.T) {
	if _, err := osexec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	type size struct{ lines, per int }
	sizes := []size{{20000, 2000}}
	if *long {
		sizes = append(sizes, size{1000000, 100000})
	}
	for _, sz := range sizes {
		input := filepath.Join(t.TempDir(), "in.txt")
		want := testkit.Bash(t, fmt.Sprintf("seq 1 %d | tee %s", sz.lines, input))
		for _, mode := range []string{"unordered", "merge cat"} {
			for _, ty := range []string{"pipe", "mq"} {
				t.Run(fmt.Sprintf("%d/%s/%s", sz.lines, cmpOr(mode, ""), ty), func(t *testing.T) {
					t.Parallel()
					flow := fmt.Sprintf(`stage src = cat %s
stage w[2] %s restart always max 1000 backoff 1ms = n=0; while IFS= read -r l; do echo "$l"; n=$((n+1)); [ $n = %d ] && exit 0; done
src -[%s]-> w
`, input, mode, sz.per, ty)
					got, stderr, code := checkedRun(t, flow, nil, nil, nil)
					if code != 0 || !sameLines(got, want) {
						t.Fatalf("status %d, %d bytes: want 0 and every line of seq 1 %d once (%d bytes)\n%s", code, len(got), sz.lines, len(want), stderr)
					}
					if bytes.Contains(stderr, []byte("not read")) || bytes.Contains(stderr, []byte("not restarted")) {
						t.Errorf("stderr:\n%s", stderr)
					}
				})
			}
		}
	}
}

// A copy that ends for good with bytes still in its input pipe (exit 0
// under restart on-failure, as head would) is no failure, but it is not
// silent: ipcflow took those bytes from upstream, and the runner says
// how many were not read.
func TestReplicaUnreadInputReported(t *testing.T) {
	for _, mode := range []string{"unordered", "merge cat"} {
		for _, ty := range []string{"pipe", "mq"} {
			t.Run(cmpOr(mode, "")+"/"+ty, func(t *testing.T) {
				t.Parallel()
				flow := fmt.Sprintf(`stage src = seq 1 20000
stage w[2] %s restart on-failure backoff 1ms = head -c 1000
src -[%s]-> w
`, mode, ty)
				_, stderr, code := checkedRun(t, flow, nil, nil, nil)
				if code != 0 || !regexp.MustCompile(`ipcflow: stage w: copy w\[[01]\]: exit status 0 with [0-9]+ bytes of its input not read; they are lost\n`).Match(stderr) {
					t.Fatalf("status %d, want 0 and the unread bytes on stderr\n%s", code, stderr)
				}
			})
		}
	}
}
