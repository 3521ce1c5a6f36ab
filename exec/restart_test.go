package exec

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipcflow/ipcflow/internal/testkit"
)

// restartRun runs flow with the real binary and returns its status,
// stdout and stderr, checking that nothing of it is left behind.
func restartRun(t *testing.T, bin, flow string, args ...string) (int, []byte, []byte) {
	t.Helper()
	script := filepath.Join(t.TempDir(), "f.ipcflow")
	os.WriteFile(script, []byte(flow), 0o600)
	runBase := t.TempDir()
	check := testkit.LeakCheck(t, runBase)
	cmd := osexec.Command(bin, append([]string{"run", "--timeout=60s", script}, args...)...)
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runBase)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	code := exitCode(t, cmd.Run())
	if ents, _ := os.ReadDir(filepath.Join(runBase, "ipcflow")); len(ents) > 0 {
		t.Errorf("the run directory %s outlived the run", ents[0].Name())
	}
	check()
	return code, stdout.Bytes(), stderr.Bytes()
}

// startFlow starts flow with the real binary in a run base of its own,
// and returns it with its stderr, the run base and the leak check.
func startFlow(t *testing.T, flow string, args ...string) (*osexec.Cmd, io.Reader, string, func()) {
	t.Helper()
	return startFlowEnv(t, nil, flow, args...)
}

// startFlowEnv is startFlow with env added to ipcflow's environment.
func startFlowEnv(t *testing.T, env []string, flow string, args ...string) (*osexec.Cmd, io.Reader, string, func()) {
	t.Helper()
	bin := testkit.BuildIpcflow(t)
	script := filepath.Join(t.TempDir(), "f.ipcflow")
	os.WriteFile(script, []byte(flow), 0o600)
	runBase := t.TempDir()
	check := testkit.LeakCheck(t, runBase)
	cmd := osexec.Command(bin, append([]string{"run", script}, args...)...)
	cmd.Env = append(append(os.Environ(), "XDG_RUNTIME_DIR="+runBase), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, stderr, runBase, check
}

// seqLines is `seq 1 n`.
func seqLines(n int) []byte {
	var b bytes.Buffer
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "%d\n", i)
	}
	return b.Bytes()
}

// The first copy of a restartable consumer reads exactly 10 lines (bash's
// read takes one byte at a time from a pipe, a fifo or a socket), prints
// them and dies; the next copy prints the rest. Over every edge type the
// two together print the input, in order, and the flow exits 0: nothing
// in the edge was lost while the stage was down.
func TestRestartedConsumerKeepsItsInput(t *testing.T) {
	bin := testkit.BuildIpcflow(t)
	if _, err := osexec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed: the test's consumer reads with bash's byte-wise read")
	}
	const n = 20000 // 108 KiB: more than a pipe holds, so the producer waits on the dead consumer
	for _, ty := range edgeTypes {
		t.Run(strings.ReplaceAll(ty, " ", "-"), func(t *testing.T) {
			t.Parallel()
			flow := fmt.Sprintf(`
stage p = seq 1 %d
stage c restart on-failure backoff 50ms = bash -c 'if [ "$IPCFLOW_RESTARTS" = 0 ]; then for i in 1 2 3 4 5 6 7 8 9 10; do IFS= read -r l; echo "$l"; done; exit 3; fi; exec cat'
p -[%s]-> c
`, n, ty)
			code, out, errb := restartRun(t, bin, flow)
			if code != 0 || !bytes.Equal(out, seqLines(n)) {
				t.Fatalf("exit status %d, %d bytes out (%.40q); want 0 and seq 1 %d\n%s", code, len(out), out, n, errb)
			}
			if !bytes.Contains(errb, []byte("stage c: exit status 3; restarting in 50ms (restart 1)")) {
				t.Errorf("stderr does not report the restart:\n%s", errb)
			}
		})
	}
}

// A restartable producer's first copy writes lines 1 to 10 and dies; the
// next starts from its own beginning (here: the rest). The consumer sees
// one stream, with no end of file between the copies.
func TestRestartedProducerIsOneStream(t *testing.T) {
	bin := testkit.BuildIpcflow(t)
	const n = 20000
	for _, ty := range edgeTypes {
		t.Run(strings.ReplaceAll(ty, " ", "-"), func(t *testing.T) {
			t.Parallel()
			flow := fmt.Sprintf(`
stage p restart on-failure backoff 50ms = if [ "$IPCFLOW_RESTARTS" = 0 ]; then seq 1 10; exit 3; fi; seq 11 %d
stage c = cat
p -[%s]-> c
`, n, ty)
			code, out, errb := restartRun(t, bin, flow)
			if code != 0 || !bytes.Equal(out, seqLines(n)) {
				t.Fatalf("exit status %d, %d bytes out (%.40q); want 0 and seq 1 %d\n%s", code, len(out), out, n, errb)
			}
		})
	}
}

// The budget: a stage that always fails with 7 under max 2 runs three
// times, and the flow fails with 7, saying how often it restarted.
func TestRestartBudgetSpent(t *testing.T) {
	bin := testkit.BuildIpcflow(t)
	code, out, errb := restartRun(t, bin, "stage f restart on-failure max 2 backoff 10ms = echo run; exit 7\n")
	if code != 7 || string(out) != "run\nrun\nrun\n" {
		t.Fatalf("exit status %d, output %q; want 7 and three runs\n%s", code, out, errb)
	}
	want := "ipcflow: stage f: exit status 7 (restarted 2 times; its restart budget of 2 within 1m0s is spent)\n"
	if !bytes.HasSuffix(errb, []byte(want)) {
		t.Errorf("stderr %q, want it to end with %q", errb, want)
	}
}

// on-failure does not restart a copy that succeeded; always does, until
// its budget is spent, and then the stage ends with its status (0).
func TestRestartPolicies(t *testing.T) {
	bin := testkit.BuildIpcflow(t)
	code, out, errb := restartRun(t, bin, "stage f restart on-failure backoff 10ms = echo run\n")
	if code != 0 || string(out) != "run\n" || len(errb) > 0 {
		t.Errorf("on-failure after success: exit %d, %q, stderr %q; want 0, one run, nothing", code, out, errb)
	}
	code, out, errb = restartRun(t, bin, "stage f restart always max 3 backoff 10ms = echo run\n")
	if code != 0 || string(out) != "run\nrun\nrun\nrun\n" || !bytes.Contains(errb, []byte("not restarted (restarted 3 times")) {
		t.Errorf("always: exit %d, %q, stderr %q; want 0, four runs, the budget's line", code, out, errb)
	}
}

// A stage that restarts does not hold up the rest: an independent chain
// runs to its end meanwhile, whole, and the flow succeeds once the
// restarting stage does.
func TestIndependentChainGoesOn(t *testing.T) {
	bin := testkit.BuildIpcflow(t)
	flow := `
stage flaky restart on-failure backoff 100ms = [ "$IPCFLOW_RESTARTS" -ge 3 ]
stage a = seq 1 100000
stage b = cat
a -> b
`
	code, out, errb := restartRun(t, bin, flow)
	if code != 0 || !bytes.Equal(out, seqLines(100000)) {
		t.Fatalf("exit status %d, %d bytes; want 0 and the whole chain's output\n%s", code, len(out), errb)
	}
	if got := bytes.Count(errb, []byte("stage flaky: exit status 1; restarting")); got != 3 {
		t.Errorf("%d restarts reported, want 3:\n%s", got, errb)
	}
}

// The stage's consumer does not see end of file while the stage is
// down: a restartable producer's restarts are invisible to `wc -l`.
// And a failure elsewhere stops the restarts: SIGTERM in the middle of a
// back-off ends the flow with 143 at once, and no copy starts after it.
func TestSigtermDuringBackoff(t *testing.T) {
	marks := filepath.Join(t.TempDir(), "starts")
	cmd, stderr, _, check := startFlow(t, "param M = x\nstage x restart on-failure backoff 3s = echo start >> \"$M\"; exit 1\n", "M="+marks)
	line, _ := bufio.NewReader(stderr).ReadString('\n')
	if !strings.Contains(line, "restarting in 3s") {
		t.Fatalf("first line %q, want the restart's", line)
	}
	t0 := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	code := exitCode(t, cmd.Wait())
	if code != 143 || time.Since(t0) > 2*time.Second {
		t.Fatalf("exit status %d after %v; want 143 at once", code, time.Since(t0))
	}
	time.Sleep(200 * time.Millisecond)
	if data, _ := os.ReadFile(marks); string(data) != "start\n" {
		t.Errorf("starts %q, want one", data)
	}
	check()
}

// A SIGKILL of ipcflow during a back-off leaves nothing: the guardian
// removes the run's objects (an mq edge and its run directory here).
func TestSigkillDuringBackoffLeavesNothing(t *testing.T) {
	cmd, stderr, runBase, check := startFlow(t, "stage p = seq 1 10\nstage x restart on-failure backoff 5s = exit 1\np -[mq]-> x\n")
	bufio.NewReader(stderr).ReadString('\n')
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if ents, _ := os.ReadDir(filepath.Join(runBase, "ipcflow")); len(ents) == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	check()
}

// 1,000 restarts of a stage that fails at once leave ipcflow's fd count
// and resident set flat (a copy's files, timer or records must not pile
// up). -long: it takes about 15 s.
func TestThousandRestartsFlat(t *testing.T) {
	if !*long {
		t.Skip("-long: 1,000 restarts take about 15 s")
	}
	// within 1us: every copy lives longer than that, so the back-off
	// stays at 10ms instead of doubling, and the budget is never spent.
	// gctrace: the Go runtime prints, at each collection (more of them
	// with GOGC=10), the heap left live after it: the measure of a leak,
	// where the resident set moves with the heap's goal and the
	// scavenger's timing (10.5 to 12.8 MiB
	// between the 500th and 1000th restart once, with 0 MB live).
	cmd, stderr, _, check := startFlowEnv(t, []string{"GODEBUG=gctrace=1", "GOGC=10"},
		"stage p = seq 1 10\nstage x restart on-failure max 1000000 within 1us backoff 10ms = false\nstage y = cat\np -> x -[mq]-> y\n")
	pid := cmd.Process.Pid
	sample := func() (fds int, rss int) {
		ents, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
		status, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		for _, l := range strings.Split(string(status), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
				rss, _ = strconv.Atoi(f[1])
			}
		}
		return len(ents), rss
	}
	liveHeap := regexp.MustCompile(`^gc \d+ @.* \d+->\d+->(\d+) MB`)
	sc := bufio.NewScanner(stderr)
	var fdsHalf, rssHalf, fdsEnd, rssEnd int
	live, liveHalf, liveMax, gcs := 0, -1, 0, 0
	for n := 0; n < 1000 && sc.Scan(); {
		if m := liveHeap.FindStringSubmatch(sc.Text()); m != nil {
			live, _ = strconv.Atoi(m[1])
			gcs++
			if liveHalf >= 0 {
				liveMax = max(liveMax, live)
			}
			continue
		}
		if !strings.Contains(sc.Text(), "restarting") {
			continue
		}
		n++
		switch n {
		case 500:
			// Past the first hundreds, once the heap has found its
			// size: from here on it must stay flat.
			fdsHalf, rssHalf = sample()
			liveHalf, liveMax = live, live
		case 1000:
			fdsEnd, rssEnd = sample()
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	go func() {
		for sc.Scan() {
		}
	}()
	if code := exitCode(t, cmd.Wait()); code != 143 {
		t.Errorf("exit status %d after SIGTERM, want 143", code)
	}
	t.Logf("after 500 restarts: %d fds, %d KiB, %d MB live; after 1000: %d fds, %d KiB, at most %d MB live (%d collections)",
		fdsHalf, rssHalf, liveHalf, fdsEnd, rssEnd, liveMax, gcs)
	if fdsEnd != fdsHalf || fdsHalf == 0 {
		t.Errorf("fds went from %d to %d", fdsHalf, fdsEnd)
	}
	if gcs == 0 {
		t.Error("no gctrace line: GODEBUG did not reach ipcflow")
	} else if liveMax > liveHalf+1 {
		t.Errorf("the live heap grew from %d MB to %d MB over 500 restarts", liveHalf, liveMax)
	}
	// The resident set only against a gross leak: the heap's goal and the
	// scavenger move it by megabytes.
	if rssEnd > rssHalf+8<<10 {
		t.Errorf("resident set grew from %d KiB to %d KiB over 500 restarts", rssHalf, rssEnd)
	}
	check()
}

// BenchmarkRestartGap measures, over 51 copies of a stage that fails at
// once with a 10ms back-off, the median time from one copy's start to
// the next's, less the back-off: an upper bound of the time from a
// copy's death to the next copy running (it includes the copy's own
// short life). Reported as gap-ms.
func BenchmarkRestartGap(b *testing.B) {
	bin := testkit.BuildIpcflow(b)
	dir := b.TempDir()
	starts := filepath.Join(dir, "starts")
	stamp := filepath.Join(dir, "stamp.sh")
	os.WriteFile(stamp, []byte("#!/bin/sh\ndate +%s%N >> \"$S\"\n[ \"$IPCFLOW_RESTARTS\" -ge 50 ] && exit 0\nexit 1\n"), 0o700)
	script := filepath.Join(dir, "f.ipcflow")
	// within 1us: every copy outlives it, so the back-off stays 10ms;
	// the 51st copy succeeds and ends the run.
	os.WriteFile(script, []byte("param S = x\nstage x restart on-failure max 1000 within 1us backoff 10ms = "+stamp+"\n"), 0o600)
	var medians []float64
	for b.Loop() {
		os.Remove(starts)
		cmd := osexec.Command(bin, "run", script, "S="+starts)
		cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+dir)
		cmd.Run()
		data, _ := os.ReadFile(starts)
		var ts []int64
		for _, l := range strings.Fields(string(data)) {
			n, _ := strconv.ParseInt(l, 10, 64)
			ts = append(ts, n)
		}
		var gaps []float64
		for i := 1; i < len(ts); i++ {
			gaps = append(gaps, float64(time.Duration(ts[i]-ts[i-1])-10*time.Millisecond)/1e6)
		}
		if len(gaps) == 0 {
			b.Fatal("no restarts recorded")
		}
		sort.Float64s(gaps)
		medians = append(medians, gaps[len(gaps)/2])
	}
	sort.Float64s(medians)
	b.ReportMetric(medians[len(medians)/2], "gap-ms")
}

// A producer that dies in the middle of a line: its part is followed by
// the next copy's first bytes, on mq as on a pipe (the bridge joins them
// into one message), and --stats-json shows the restart, the failure
// and what both copies wrote.
func TestPartialLineAndStats(t *testing.T) {
	bin := testkit.BuildIpcflow(t)
	for _, ty := range []string{"pipe", "mq", "shm"} {
		t.Run(ty, func(t *testing.T) {
			t.Parallel()
			js := filepath.Join(t.TempDir(), "stats.json")
			flow := `stage p restart on-failure backoff 10ms = if [ "$IPCFLOW_RESTARTS" = 0 ]; then printf "one\nab"; exit 1; fi; echo cd
stage c = cat
p -[` + ty + `]-> c
`
			code, out, errb := restartRun(t, bin, flow, "--stats-json", js)
			if code != 0 || string(out) != "one\nabcd\n" {
				t.Fatalf("exit status %d, output %q; want 0 and \"one\\nabcd\\n\"\n%s", code, out, errb)
			}
			data, _ := os.ReadFile(js)
			var rep struct {
				Stages []struct {
					Name        string
					LastFailure string `json:"last_failure"`
					Restarts    int
					Written     int64 `json:"bytes_written"`
				}
			}
			if err := json.Unmarshal(data, &rep); err != nil || len(rep.Stages) != 2 ||
				rep.Stages[0].Restarts != 1 || rep.Stages[0].LastFailure != "exit status 1" || rep.Stages[1].Restarts != 0 ||
				rep.Stages[0].Written != int64(len(out)) {
				t.Errorf("--stats-json stages %+v (%v), want p restarted once after exit status 1, its copies' %d bytes written", rep.Stages, err, len(out))
			}
		})
	}
}

// A copy that cannot even start (127: no such program) lived no time:
// its back-off doubles as any quick failure's does.
func TestBackoffDoublesWhenTheProgramIsMissing(t *testing.T) {
	bin := testkit.BuildIpcflow(t)
	code, _, errb := restartRun(t, bin, "stage c restart on-failure max 3 backoff 10ms = /nonexistent/prog\n")
	if code != 127 {
		t.Errorf("exit status %d, want 127\n%s", code, errb)
	}
	for _, want := range []string{"restarting in 10ms (restart 1)", "restarting in 20ms (restart 2)", "restarting in 40ms (restart 3)"} {
		if !bytes.Contains(errb, []byte(want)) {
			t.Errorf("stderr lacks %q:\n%s", want, errb)
		}
	}
}
