package exec

import (
	"bytes"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipcflow/ipcflow/internal/testkit"
)

// Replicas (SPEC 11, issue 13) with the real binary against bash: byte
// for byte, exit status, nothing left behind. Blocks are made small
// (IPCFLOW_REPLICA_BLOCK) so that small inputs cross many of them.

// replicaRun runs flow with the real binary and returns stdout, stderr and
// the exit status, after checking that the run left nothing behind.
func replicaRun(t *testing.T, flow string, stdin []byte, env ...string) ([]byte, []byte, int) {
	t.Helper()
	return checkedRun(t, flow, stdin, env, nil)
}

// checkedRun runs flow with the real binary (env added to its
// environment, args after the script) and returns stdout, stderr and the
// exit status, after checking that the run left nothing behind: no
// process, no object, no directory.
func checkedRun(t *testing.T, flow string, stdin []byte, env, args []string) ([]byte, []byte, int) {
	t.Helper()
	bin := testkit.BuildIpcflow(t)
	script := filepath.Join(t.TempDir(), "f.ipcflow")
	os.WriteFile(script, []byte(flow), 0o600)
	runBase := t.TempDir()
	check := testkit.LeakCheck(t, runBase)
	mark := fmt.Sprintf("replicas-%d-%d", os.Getpid(), time.Now().UnixNano())
	cmd := osexec.Command(bin, append([]string{"run", "--timeout=60s", script}, args...)...)
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runBase, "IPCFLOW_TEST_MARK="+mark)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	code := exitCode(t, cmd.Run())
	if ents, _ := os.ReadDir(filepath.Join(runBase, "ipcflow")); len(ents) > 0 {
		t.Errorf("the run directory %s outlived the run", ents[0].Name())
	}
	testkit.WaitNoProcs(t, mark, 2*time.Second)
	check()
	return stdout.Bytes(), stderr.Bytes(), code
}

// replicaInputs are the streams replicas must cut right: text over many
// blocks, a line longer than a block among short ones, NUL bytes, a last
// line without a newline, nothing at all, one line.
func replicaInputs() map[string][]byte {
	var text bytes.Buffer
	for i := 1; i <= 20000; i++ {
		fmt.Fprintf(&text, "%05d line %d of the input, abc\n", (i*7919)%20000, i)
	}
	long := []byte("first\n" + strings.Repeat("x", 40000) + "\nmiddle\x00with a NUL\n" +
		strings.Repeat("y", 9000) + "\n" + strings.Repeat("short a\n", 3000) + "last line without a newline")
	bin := make([]byte, 100_000)
	for i := range bin {
		bin[i] = byte(i * 7 % 251)
	}
	return map[string][]byte{
		"text":       text.Bytes(),
		"long-lines": long,
		"binary":     bin,
		"empty":      nil,
		"one-line":   []byte("just one line a\n"),
	}
}

const smallBlocks = "IPCFLOW_REPLICA_BLOCK=4K"

// TestReplicasLineLocalExact: an ordered replicated stage prints exactly
// what the stage alone prints, for N = 1 to 8, a program exec'd directly
// and a command of the stage shell.
func TestReplicasLineLocalExact(t *testing.T) {
	inputs := replicaInputs()
	for _, cmd := range []string{`sed 's/a/A/g'`, `tr a-z A-Z | cat`} {
		for name, in := range inputs {
			want := testkit.Bash(t, cmd, testkit.Stdin(in))
			for n := 1; n <= 8; n++ {
				t.Run(fmt.Sprintf("%s/%s/%d", strings.Fields(cmd)[0], name, n), func(t *testing.T) {
					t.Parallel()
					flow := fmt.Sprintf("stage g[%d] = %s\nstdin -> g\n", n, cmd)
					got, stderr, code := replicaRun(t, flow, in, smallBlocks)
					if code != 0 || !bytes.Equal(got, want) {
						t.Errorf("status %d, %d bytes (%.60q), want 0 and bash's %d (%.60q)\n%s", code, len(got), got, len(want), want, stderr)
					}
				})
			}
		}
	}
}

// TestReplicasEveryEdgeType: every edge type into and out of a replicated
// stage, in each of the three modes.
func TestReplicasEveryEdgeType(t *testing.T) {
	in := replicaInputs()["long-lines"]
	dir := t.TempDir()
	path, pathNL := filepath.Join(dir, "in"), filepath.Join(dir, "in-nl")
	os.WriteFile(path, in, 0o600)
	// merge cat glues a copy's unterminated last line to the next
	// copy's first, as cat of the files would: give it whole lines.
	os.WriteFile(pathNL, append(slices.Clone(in), '\n'), 0o600)
	for _, ty := range edgeTypes {
		for _, mode := range []string{"", "unordered", "merge cat"} {
			t.Run(strings.ReplaceAll(ty, " ", "-")+"/"+cmpOr(mode, "ordered"), func(t *testing.T) {
				t.Parallel()
				path := path
				if mode == "merge cat" {
					path = pathNL
				}
				want := testkit.Bash(t, "tr a-z A-Z < "+path)
				flow := fmt.Sprintf("stage a = cat %s\nstage g[3] %s = tr a-z A-Z\nstage b = cat\na -[%s]-> g -[%s]-> b\n", path, mode, ty, ty)
				got, stderr, code := replicaRun(t, flow, nil, smallBlocks)
				if code != 0 {
					t.Fatalf("status %d\n%s", code, stderr)
				}
				if mode == "" && !bytes.Equal(got, want) {
					t.Errorf("%d bytes (%.60q), want bash's %d (%.60q)", len(got), got, len(want), want)
				}
				if mode != "" && !sameLines(got, want) {
					t.Errorf("lines differ as a multiset: %d bytes, want %d", len(got), len(want))
				}
			})
		}
	}
}

func cmpOr(a, b string) string {
	if a == "" {
		return b
	}
	return strings.Fields(a)[0]
}

// sameLines reports whether a and b hold the same lines, in any order (a
// last line without a newline counts as a line).
func sameLines(a, b []byte) bool {
	split := func(x []byte) []string {
		s := strings.Split(string(x), "\n")
		if len(s) > 0 && s[len(s)-1] == "" {
			s = s[:len(s)-1]
		}
		slices.Sort(s)
		return s
	}
	return slices.Equal(split(a), split(b))
}

// TestReplicasUnordered: the copies' outputs merge a whole line at a time,
// lines longer than the merger's buffer (256 KiB) included.
func TestReplicasUnordered(t *testing.T) {
	var in bytes.Buffer
	for i := range 3000 {
		fmt.Fprintf(&in, "line %d\n", i)
		if i%1000 == 0 {
			in.WriteString(strings.Repeat(strconv.Itoa(i%10), 300_000) + "\n")
		}
	}
	for n := 1; n <= 8; n++ {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			t.Parallel()
			flow := fmt.Sprintf("stage g[%d] unordered = cat\nstdin -> g\n", n)
			got, stderr, code := replicaRun(t, flow, in.Bytes(), smallBlocks)
			if code != 0 || !sameLines(got, in.Bytes()) {
				t.Errorf("status %d, %d bytes: want 0 and the input's %d bytes' lines in any order\n%s", code, len(got), in.Len(), stderr)
			}
		})
	}
}

// TestReplicasMerge: sort in parallel with sort -m, count with a summing
// awk, and the merge command in the stage shell, equal to bash's.
func TestReplicasMerge(t *testing.T) {
	in := replicaInputs()["text"]
	cases := []struct{ flow, bash string }{
		{"env LC_ALL = C\nstage s[4] merge 'sort -m' = sort\nstdin -> s\n", "LC_ALL=C sort"},
		{"stage n[4] merge 'awk \"{s+=\\$1} END {print s}\"' = wc -l\nstdin -> n\n", "wc -l | tr -d ' '"},
		{"env LC_ALL = C\nstage s[3] merge 'sort -m -k2' = sort -k2\nstage u = uniq -c\nstdin -> s -> u\n", "LC_ALL=C sort -k2 | uniq -c"},
		{"param M = 'cat'\nstage c[2] merge \"$M\" = sort -r | head -2\nstdin -> c\n", "sort -r | head -2; echo ---"},
	}
	for i, c := range cases {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			want := testkit.Bash(t, c.bash, testkit.Stdin(in))
			got, stderr, code := replicaRun(t, c.flow, in, smallBlocks)
			if i == 3 {
				// Each copy's own two largest lines: 4 lines, the
				// overall two largest among them.
				lines := strings.Split(strings.TrimSpace(string(got)), "\n")
				slices.Sort(lines)
				top := strings.Split(strings.TrimSpace(strings.Split(string(want), "---")[0]), "\n")
				if code != 0 || len(lines) != 4 || !slices.Contains(lines, top[0]) || !slices.Contains(lines, top[1]) {
					t.Errorf("status %d, %q: want 0 and 4 lines holding %q\n%s", code, got, top, stderr)
				}
				return
			}
			if code != 0 || !bytes.Equal(got, want) {
				t.Errorf("status %d, %d bytes (%.80q), want 0 and bash's %d (%.80q)\n%s", code, len(got), got, len(want), want, stderr)
			}
		})
	}
}

// TestReplicasEmptyInput: with nothing to read a replicated stage ends as
// the command over empty input does: grep's status 1, an awk BEGIN's line
// once (ordered runs one copy over the empty input).
func TestReplicasEmptyInput(t *testing.T) {
	got, _, code := replicaRun(t, "stage g[4] = grep x\nstdin -> g\n", nil)
	if code != 1 || len(got) != 0 {
		t.Errorf("grep over nothing: status %d, %q, want 1 and nothing", code, got)
	}
	got, _, code = replicaRun(t, "stage g[4] = awk 'BEGIN {print \"head\"} {print}'\nstdin -> g\n", nil)
	if code != 0 || string(got) != "head\n" {
		t.Errorf("awk BEGIN over nothing: status %d, %q, want 0 and \"head\\n\"", code, got)
	}
}

// TestReplicasGrepStatus: grep's status 1 ("nothing selected") in a part
// of the input is no failure while another part selected lines; when no
// part did, the stage exits 1, as grep over the whole input does.
func TestReplicasGrepStatus(t *testing.T) {
	in := replicaInputs()["text"]
	for _, mode := range []string{"", "unordered", "merge cat"} {
		t.Run(cmpOr(mode, "ordered"), func(t *testing.T) {
			t.Parallel()
			// One line of the input matches: every other block's grep
			// exits 1.
			flow := fmt.Sprintf("stage g[4] %s = grep 'line 777 of'\nstdin -> g\n", mode)
			got, stderr, code := replicaRun(t, flow, in, smallBlocks)
			if want := testkit.Bash(t, "grep 'line 777 of'", testkit.Stdin(in)); code != 0 || !bytes.Equal(got, want) {
				t.Errorf("status %d, %q, want 0 and %q\n%s", code, got, want, stderr)
			}
			flow = fmt.Sprintf("stage g[4] %s = grep 'not in the input'\nstdin -> g\n", mode)
			got, stderr, code = replicaRun(t, flow, in, smallBlocks)
			if code != 1 || len(got) != 0 || !bytes.Contains(stderr, []byte("ipcflow: stage g: exit status 1")) {
				t.Errorf("status %d, %q, want 1 and nothing\n%s", code, got, stderr)
			}
		})
	}
}

// TestReplicasFailingCopy: the first copy to fail fails the stage with its
// status, names the copy, and the flow ends with nothing left behind.
func TestReplicasFailingCopy(t *testing.T) {
	var in bytes.Buffer
	for i := 1; i <= 50000; i++ {
		fmt.Fprintf(&in, "%d\n", i)
	}
	for _, mode := range []string{"", "unordered", "merge cat"} {
		t.Run(cmpOr(mode, "ordered"), func(t *testing.T) {
			t.Parallel()
			flow := fmt.Sprintf("stage g[3] %s = awk '{print} /^40000$/ {exit 3}'\nstage b = cat\nstdin -> g -> b\n", mode)
			_, stderr, code := replicaRun(t, flow, in.Bytes(), smallBlocks)
			if code != 3 || !bytes.Contains(stderr, []byte("ipcflow: stage g: copy g[")) || !bytes.Contains(stderr, []byte("exit status 3")) {
				t.Errorf("status %d, want 3 and the copy named\n%s", code, stderr)
			}
		})
	}
	t.Run("signal", func(t *testing.T) {
		_, stderr, code := replicaRun(t, "stage g[2] = sh -c 'cat; kill -TERM $$'\nstdin -> g\n", in.Bytes())
		if code != 128+15 || !bytes.Contains(stderr, []byte("killed by signal SIGTERM")) {
			t.Errorf("status %d, want 143\n%s", code, stderr)
		}
	})
	t.Run("not-found", func(t *testing.T) {
		// Not from ipcflow's stdin: a stage that never starts leaves
		// ipcflow's copy of a piped stdin behind for a moment, with or
		// without replicas (the run directory is seen after the exit).
		_, stderr, code := replicaRun(t, "stage a = seq 1 50000\nstage g[2] = no-such-program-here\na -> g\n", nil)
		if code != 127 || !bytes.Contains(stderr, []byte("command not found")) {
			t.Errorf("status %d, want 127\n%s", code, stderr)
		}
	})
	t.Run("merge-not-found", func(t *testing.T) {
		_, stderr, code := replicaRun(t, "stage a = seq 1 50000\nstage g[2] merge 'no-such-merge' = cat\na -> g\n", nil)
		if code != 127 || !bytes.Contains(stderr, []byte("no-such-merge: command not found")) {
			t.Errorf("status %d, want 127\n%s", code, stderr)
		}
	})
}

// TestReplicasHeadDownstream: a reader that stops early stops every copy
// as SIGPIPE would: status 0, at once, nothing left.
func TestReplicasHeadDownstream(t *testing.T) {
	for _, mode := range []string{"", "unordered", "merge cat"} {
		t.Run(cmpOr(mode, "ordered"), func(t *testing.T) {
			t.Parallel()
			flow := fmt.Sprintf("stage src = yes 'a line of text'\nstage g[4] %s = sed s/a/A/\nstage h = head -3\nsrc -> g -> h\n", mode)
			start := time.Now()
			got, stderr, code := replicaRun(t, flow, nil)
			if code != 0 || string(got) != strings.Repeat("A line of text\n", 3) {
				t.Errorf("status %d, %q, want 0 and 3 lines\n%s", code, got, stderr)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

// TestReplicasCountFromParam: [$N], [auto], and a bad $N refused.
func TestReplicasCountFromParam(t *testing.T) {
	in := replicaInputs()["text"]
	want := testkit.Bash(t, "tr 0-9 a-j", testkit.Stdin(in))
	for _, n := range []string{"1", "3", "auto"} {
		got, stderr, code := replicaRun(t, "param N = "+n+"\nstage g[$N] = tr 0-9 a-j\nstdin -> g\n", in, smallBlocks)
		if code != 0 || !bytes.Equal(got, want) {
			t.Errorf("N=%s: status %d\n%s", n, code, stderr)
		}
	}
	got, stderr, code := replicaRun(t, "stage g[auto] = tr 0-9 a-j\nstdin -> g\n", in, smallBlocks)
	if code != 0 || !bytes.Equal(got, want) {
		t.Errorf("auto: status %d\n%s", code, stderr)
	}
	bin := testkit.BuildIpcflow(t)
	script := filepath.Join(t.TempDir(), "f.ipcflow")
	os.WriteFile(script, []byte("param N = 2\nstage g[$N] = cat\nstdin -> g\n"), 0o600)
	for _, bad := range []string{"0", "x", "2000"} {
		out, err := osexec.Command(bin, "run", script, "N="+bad).CombinedOutput()
		want := fmt.Sprintf("%s:2:1: stage g: replica count $N is %q: want a number from 1 to 1024, or auto\n", script, bad)
		if exitCode(t, err) != 2 || string(out) != want {
			t.Errorf("N=%s: %v %q, want status 2 and %q", bad, err, out, want)
		}
	}
	out, err := osexec.Command(bin, "run", "--dry-run", script, "N=5").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("g: 5 copies, ordered")) || !bytes.Contains(out, []byte("copies g[0] to g[4]: exec ")) {
		t.Errorf("--dry-run: %v\n%s", err, out)
	}
}

// TestUsableCPUs: auto is at most the affinity mask's CPUs and at least 1.
func TestUsableCPUs(t *testing.T) {
	n := usableCPUs()
	out, err := osexec.Command("nproc").Output()
	if err != nil {
		t.Skip("no nproc")
	}
	p, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	if n < 1 || n > p {
		t.Errorf("usableCPUs %d, nproc %d", n, p)
	}
}

// TestReplicasKilled: SIGTERM to ipcflow mid-run stops every copy (128+15,
// nothing left), and so does SIGKILL, through the guardian and the copies'
// parent-death signal.
func TestReplicasKilled(t *testing.T) {
	bin := testkit.BuildIpcflow(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		for _, mode := range []string{"", "unordered"} {
			t.Run(fmt.Sprintf("%v/%s", sig, cmpOr(mode, "ordered")), func(t *testing.T) {
				t.Parallel()
				script := filepath.Join(t.TempDir(), "f.ipcflow")
				os.WriteFile(script, []byte(fmt.Sprintf("stage src = seq 1 100000\nstage g[3] %s = sh -c 'cat; sleep 300'\nsrc -> g\n", mode)), 0o600)
				runBase := t.TempDir()
				check := testkit.LeakCheck(t, runBase)
				mark := fmt.Sprintf("replicas-kill-%d-%d", os.Getpid(), time.Now().UnixNano())
				cmd := osexec.Command(bin, "run", script)
				cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runBase, "IPCFLOW_TEST_MARK="+mark, smallBlocks)
				cmd.Stdout = io.Discard
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				// ipcflow, the guardian, src, the runner and 3 sleeping copies.
				deadline := time.Now().Add(20 * time.Second)
				for countSleeps(mark) < 3 {
					if time.Now().After(deadline) {
						cmd.Process.Kill()
						t.Fatalf("the copies did not start")
					}
					time.Sleep(20 * time.Millisecond)
				}
				cmd.Process.Signal(sig)
				err := cmd.Wait()
				if sig == syscall.SIGTERM && exitCode(t, err) != 128+15 {
					t.Errorf("exit status %d after SIGTERM, want 143", exitCode(t, err))
				}
				testkit.WaitNoProcs(t, mark, 5*time.Second)
				check()
			})
		}
	}
}

// countSleeps counts the run's processes running sleep.
func countSleeps(mark string) int {
	n := 0
	for _, pid := range testkit.MarkedProcs(mark) {
		if c, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(c)) == "sleep" {
			n++
		}
	}
	return n
}

// TestReplicasWorkQueue: an unordered stage fed by an mq edge takes its
// work from the queue (each message to one copy, --dry-run says so): the
// lines come out whole, none lost or doubled, lines that span many
// messages (msgsize=64) and one longer than the feeders' buffer
// included; copies that stop reading early leave the rest of the queue
// to the others, or end the stream as a pipe would when all have.
func TestReplicasWorkQueue(t *testing.T) {
	var in bytes.Buffer
	for i := range 5000 {
		fmt.Fprintf(&in, "line %d of the queue\n", i)
		if i%1000 == 0 {
			in.WriteString(strings.Repeat(strconv.Itoa(i%10), 3000) + "\n")
		}
	}
	in.WriteString(strings.Repeat("L", 3<<20) + "\n") // past a feeder's 1 MiB buffer
	file := filepath.Join(t.TempDir(), "in")
	os.WriteFile(file, in.Bytes(), 0o600)
	bin := testkit.BuildIpcflow(t)
	script := filepath.Join(t.TempDir(), "f.ipcflow")
	os.WriteFile(script, []byte("stage a = cat "+file+"\nstage g[3] unordered = cat\na -[mq msgsize=64]-> g\n"), 0o600)
	if out, err := osexec.Command(bin, "run", "--dry-run", script).CombinedOutput(); err != nil || !bytes.Contains(out, []byte("replica runner receives from the mq edge into in, each message (whole lines) for one copy")) {
		t.Errorf("--dry-run does not say the queue is the work queue (%v):\n%s", err, out)
	}
	for _, msgsize := range []string{"64", "8192"} {
		for n := 1; n <= 4; n++ {
			t.Run(fmt.Sprintf("msgsize%s/%d", msgsize, n), func(t *testing.T) {
				t.Parallel()
				flow := fmt.Sprintf("stage a = cat %s\nstage g[%d] unordered = cat\na -[mq msgsize=%s]-> g\n", file, n, msgsize)
				got, stderr, code := replicaRun(t, flow, nil)
				if code != 0 || !sameLines(got, in.Bytes()) {
					t.Errorf("status %d, %d bytes: want 0 and the input's %d bytes' lines in any order\n%s", code, len(got), in.Len(), stderr)
				}
			})
		}
	}
	// A copy that stops reading while its feeder writes it the pieces of
	// a line longer than the feeder's buffer ends that feeder alone: the
	// other copy takes the rest of the queue, and the stage succeeds
	// (it used to fail with "read: broken pipe", the copy's EPIPE). The
	// lines that shared the long line's last message are lost with it.
	t.Run("copy-stops-mid-line", func(t *testing.T) {
		var in bytes.Buffer
		in.WriteString(strings.Repeat("L", 8<<20) + "\n")
		for i := range 5000 {
			fmt.Fprintf(&in, "line %d of the queue\n", i)
		}
		file := filepath.Join(t.TempDir(), "in")
		os.WriteFile(file, in.Bytes(), 0o600)
		flow := fmt.Sprintf("stage a = cat %s\nstage g[2] unordered = head -c 1500000\nstage b = cat\na -[mq msgsize=8192]-> g -> b\n", file)
		got, stderr, code := replicaRun(t, flow, nil)
		if n := bytes.Count(got, []byte(" of the queue\n")); code != 0 || n < 5000-8192/20 || bytes.Count(got, []byte("L")) != 1500000 {
			t.Fatalf("status %d, %d short lines, want 0, the 5000 short lines less one message's and head's 1500000 bytes of the long one\n%s", code, n, stderr)
		}
	})
	t.Run("copies-stop-early", func(t *testing.T) {
		flow := fmt.Sprintf("stage a = cat %s\nstage g[3] unordered = head -n 2\nstage b = cat\na -[mq msgsize=64]-> g -> b\n", file)
		got, stderr, code := replicaRun(t, flow, nil)
		lines := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
		if code != 0 || len(lines) > 6 || len(lines) < 2 {
			t.Fatalf("status %d, %d lines: want 0 and 2 to 6 lines\n%s", code, len(lines), stderr)
		}
		for _, l := range lines {
			if !bytes.Contains(in.Bytes(), []byte(l+"\n")) {
				t.Errorf("%.40q is no line of the input", l)
			}
		}
	})
}
