package exec

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"mvdan.cc/sh/v3/syntax"

	"github.com/ipcflow/ipcflow/internal/testkit"
	"github.com/ipcflow/ipcflow/parser"
)

// The exit-status table of SPEC 6.
var statusFlows = []struct {
	name    string
	flow    func(b *graphBuilder)
	args    []string
	code    int
	stderr  []string // lines that must appear, in order
	quiet   bool     // stderr must be empty
	maxTime time.Duration
	minTime time.Duration
}{
	{name: "true", flow: func(b *graphBuilder) { b.stage("a", "true") }, code: 0, quiet: true},
	{name: "false", flow: func(b *graphBuilder) { b.stage("a", "false") }, code: 1,
		stderr: []string{"ipcflow: stage a: exit status 1"}},
	{name: "exit3", flow: func(b *graphBuilder) { b.stage("a", "exit 3") }, code: 3,
		stderr: []string{"ipcflow: stage a: exit status 3"}},
	{name: "signal", flow: func(b *graphBuilder) { b.stage("a", `sh -c 'kill -USR1 $$'`) }, code: 128 + 10,
		stderr: []string{"ipcflow: stage a: killed by signal SIGUSR1"}},
	{name: "signal-shell", flow: func(b *graphBuilder) { b.stage("a", `echo hi >/dev/null; kill -TERM $$`) }, code: 128 + 15,
		stderr: []string{"ipcflow: stage a: killed by signal SIGTERM"}},
	{name: "signal-shell-no-kill-program", flow: func(b *graphBuilder) { b.stage("a", `PATH=/nonexistent; kill -TERM $$`) }, code: 128 + 15,
		stderr: []string{"ipcflow: stage a: killed by signal SIGTERM"}},
	{name: "yes-head", flow: func(b *graphBuilder) {
		b.stage("y", "yes")
		b.stage("h", "head -n 3")
		b.chain("", "y", "h")
	}, code: 0, quiet: true},
	{name: "yes-head-shell", flow: func(b *graphBuilder) {
		b.stage("y", "yes | cat")
		b.stage("h", "head -n 3")
		b.chain("", "y", "h")
	}, code: 0, quiet: true},
	{name: "epipe-exit", flow: func(b *graphBuilder) {
		// yes with SIGPIPE ignored exits 1 on EPIPE once head has gone;
		// then the stage takes a moment before it exits 1 too, as a
		// program that cleans up would.
		b.stage("y", `sh -c "trap '' PIPE; yes; sleep 0.2; exit 1"`)
		b.stage("h", "head -n 3")
		b.chain("", "y", "h")
	}, code: 0},
	{name: "fail-after-output", flow: func(b *graphBuilder) {
		// The reader ends because the writer closed the pipe by exiting:
		// a failure, however the two exits are reaped (TestFailureIsNotEPIPE).
		b.stage("w", "echo hi; exit 3")
		b.stage("r", "cat")
		b.chain("", "w", "r")
	}, code: 3, stderr: []string{"ipcflow: stage w: exit status 3"}},
	{name: "closed-output-then-fail", flow: func(b *graphBuilder) {
		// The writer closes its stdout, its reader sees end of file and
		// ends while the writer still runs, then the writer fails: it
		// never met EPIPE, so this is a failure, as with pipefail.
		b.stage("w", `sh -c "echo hi; exec >&-; sleep 0.2; exit 3"`)
		b.stage("r", "cat")
		b.chain("", "w", "r")
	}, code: 3, stderr: []string{"ipcflow: stage w: exit status 3"}},
	{name: "not-found", flow: func(b *graphBuilder) {
		b.stage("a", "no-such-program-xyz --flag")
		b.stage("b", "wc -l")
		b.chain("", "a", "b")
	}, code: 127, stderr: []string{"ipcflow: stage a: no-such-program-xyz: command not found"}},
	{name: "not-found-tears-down", flow: func(b *graphBuilder) {
		// A stage that cannot start is a failure like any other: the
		// stages after it in the file are not started, or are stopped.
		b.stage("a", "no-such-program-xyz")
		b.stage("b", "sleep 30")
	}, code: 127, stderr: []string{"ipcflow: stage a: no-such-program-xyz: command not found"}, maxTime: 5 * time.Second},
	{name: "not-found-after", flow: func(b *graphBuilder) {
		b.stage("a", "true")
		n := b.stage("n", "no-such-program-xyz")
		s := b.stage("s", "sleep 30")
		n.After = []*parser.Stage{b.find("a")}
		s.After = []*parser.Stage{b.find("a")}
	}, code: 127, stderr: []string{"ipcflow: stage n: no-such-program-xyz: command not found"}, maxTime: 5 * time.Second},
	{name: "not-found-in-shell", flow: func(b *graphBuilder) {
		b.stage("a", "echo hi | no-such-program-xyz")
	}, code: 127, stderr: []string{"ipcflow: stage a: no-such-program-xyz: command not found", "ipcflow: stage a: exit status 127"}},
	// Like bash: 126 for a file that is there but can't run, 127 for one
	// that isn't (or whose #! interpreter isn't), with bash's words.
	{name: "not-executable", flow: func(b *graphBuilder) {
		b.stage("a", "/etc/passwd")
	}, code: 126, stderr: []string{"ipcflow: stage a: /etc/passwd: Permission denied"}},
	{name: "directory", flow: func(b *graphBuilder) {
		b.stage("a", "/")
	}, code: 126, stderr: []string{"ipcflow: stage a: /: Is a directory"}},
	{name: "no-such-file", flow: func(b *graphBuilder) {
		b.stage("a", "./no-such-file-xyz.sh")
	}, code: 127, stderr: []string{"ipcflow: stage a: ./no-such-file-xyz.sh: No such file or directory"}},
	{name: "not-executable-in-shell", flow: func(b *graphBuilder) {
		b.stage("a", "/etc/passwd; exit $?")
	}, code: 126, stderr: []string{"ipcflow: stage a: /etc/passwd: Permission denied", "ipcflow: stage a: exit status 126"}},
	{name: "teardown", flow: func(b *graphBuilder) {
		b.stage("sleeper", "sleep 30")
		b.stage("bad", "sleep 0.2; exit 4")
	}, code: 4, stderr: []string{"ipcflow: stage bad: exit status 4"}, maxTime: 5 * time.Second},
	{name: "teardown-grace", flow: func(b *graphBuilder) {
		// Ignores SIGTERM (and so does its child): only SIGKILL, after
		// --grace, ends it.
		b.stage("stubborn", `sh -c "trap '' TERM; sleep 30"`)
		b.stage("bad", "sleep 0.2; exit 5")
	}, args: []string{"--grace=300ms"}, code: 5, stderr: []string{"ipcflow: stage bad: exit status 5"},
		minTime: 450 * time.Millisecond, maxTime: 5 * time.Second},
	{name: "after-chain", flow: func(b *graphBuilder) {
		b.stage("a", "true")
		b.stage("b", "exit 6")
		c := b.stage("c", "echo should-not-run")
		d := b.stage("d", "echo should-not-run")
		c.After = []*parser.Stage{b.find("a"), b.find("b")}
		d.After = []*parser.Stage{c}
	}, code: 6, stderr: []string{"ipcflow: stage b: exit status 6", "ipcflow: stage c: skipped: b failed", "ipcflow: stage d: skipped: b failed"}},
	{name: "after-unrelated-skip-says-the-flow-stopped", flow: func(b *graphBuilder) {
		b.stage("prep", "exit 3")
		b.stage("main", "echo should-not-run").After = []*parser.Stage{b.find("prep")}
		b.stage("ok1", "sleep 0.3")
		b.stage("main2", "echo should-not-run").After = []*parser.Stage{b.find("ok1")}
	}, code: 3, stderr: []string{"ipcflow: stage prep: exit status 3", "ipcflow: stage main: skipped: prep failed",
		"ipcflow: stage main2: skipped: the flow stopped (prep failed)"}},
	{name: "after-ok", flow: func(b *graphBuilder) {
		b.stage("a", "echo one")
		c := b.stage("c", "echo two")
		c.After = []*parser.Stage{b.find("a")}
	}, code: 0, quiet: true},
	{name: "first-failure-wins", flow: func(b *graphBuilder) {
		b.stage("early", "exit 7")
		b.stage("late", "sleep 0.3; exit 8")
	}, args: []string{"--keep-going"}, code: 7, stderr: []string{"ipcflow: stage early: exit status 7", "ipcflow: stage late: exit status 8"}},
}

func init() {
	for _, c := range statusFlows {
		c := c
		testFlows["st-"+c.name] = func() *parser.Graph {
			b := newGraph()
			c.flow(b)
			return b.g
		}
	}
}

func TestExitStatus(t *testing.T) {
	for _, c := range statusFlows {
		t.Run(c.name, func(t *testing.T) {
			fr := newFlowRun(t, "st-"+c.name, c.args...)
			check := testkit.LeakCheck(t, fr.runDir)
			start := time.Now()
			code := fr.run(t)
			took := time.Since(start)
			stderr := fr.stderr.String()
			if code != c.code {
				t.Errorf("exit status %d, want %d\nstderr:\n%s", code, c.code, stderr)
			}
			if c.quiet && stderr != "" {
				t.Errorf("stderr not empty:\n%s", stderr)
			}
			rest := stderr
			for _, line := range c.stderr {
				i := strings.Index(rest, line+"\n")
				if i < 0 {
					t.Errorf("stderr lacks %q (in order):\n%s", line, stderr)
					break
				}
				rest = rest[i+len(line):]
			}
			if strings.Contains(stderr, "should-not-run") || strings.Contains(fr.stdout.String(), "should-not-run") {
				t.Errorf("a skipped stage ran")
			}
			if took < c.minTime {
				t.Errorf("took %v, want at least %v", took, c.minTime)
			}
			if c.maxTime > 0 && took > c.maxTime {
				t.Errorf("took %v, want under %v", took, c.maxTime)
			}
			check()
			testkit.WaitNoProcs(t, fr.mark, time.Second)
		})
	}
}

// Linux closes an exiting writer's fds before it makes the writer
// waitable, so its reader can be reaped first. That once made a failure
// pass for a broken pipe about one run in a hundred: run it often enough
// to see it.
func TestFailureIsNotEPIPE(t *testing.T) {
	for i := 0; i < 60; i++ {
		fr := newFlowRun(t, "st-fail-after-output")
		if code := fr.run(t); code != 3 {
			t.Fatalf("run %d: exit status %d, want 3; stderr:\n%s", i, code, fr.stderr.Bytes())
		}
	}
}

// An `after` stage's words are expanded when it starts: an earlier stage
// may make the program and the files it globs.
func init() {
	testFlows["after-makes"] = func() *parser.Graph {
		b := newGraph()
		b.g.Params = []*parser.Param{{Name: "D"}}
		b.stage("mk", `mkdir -p "$D/sub" && touch "$D/sub/one.txt" "$D/sub/two.txt" && printf '#!/bin/sh\necho "tool $*"\n' > "$D/tool" && chmod +x "$D/tool"`)
		use := b.stage("use", `"$D/tool" sub/*.txt`)
		use.After = []*parser.Stage{b.find("mk")}
		f, _ := syntax.NewParser().Parse(strings.NewReader(`"$D"`), "")
		use.Dir = f.Stmts[0].Cmd.(*syntax.CallExpr).Args[0]
		nodir := b.stage("nodir", "true")
		nodir.After = []*parser.Stage{use}
		f, _ = syntax.NewParser().Parse(strings.NewReader(`"$D/none"`), "")
		nodir.Dir = f.Stmts[0].Cmd.(*syntax.CallExpr).Args[0]
		return b.g
	}
}

func TestAfterStageExpandsWhenItStarts(t *testing.T) {
	d := t.TempDir()
	fr := newFlowRun(t, "after-makes", "D="+d)
	code := fr.run(t)
	if got, want := fr.stdout.String(), "tool sub/one.txt sub/two.txt\n"; got != want {
		t.Errorf("stdout %q, want %q; stderr:\n%s", got, want, fr.stderr.Bytes())
	}
	if code != 126 || !strings.Contains(fr.stderr.String(), "ipcflow: stage nodir: dir "+d+"/none: no such directory\n") {
		t.Errorf("exit status %d, stderr:\n%s\nwant 126 and a line about the missing dir", code, fr.stderr.Bytes())
	}
}

// A script without a #! line runs as a shell script, as in a shell.
func init() {
	testFlows["noshebang"] = func() *parser.Graph {
		b := newGraph()
		b.g.Params = []*parser.Param{{Name: "S"}}
		b.stage("direct", `"$S" one`)
		b.stage("inshell", `"$S" two | cat`)
		b.edge("direct", "stdout", "")
		b.edge("inshell", "stdout", "")
		return b.g
	}
}

func TestScriptWithoutShebang(t *testing.T) {
	script := filepath.Join(t.TempDir(), "s")
	if err := os.WriteFile(script, []byte("echo \"got $1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	fr := newFlowRun(t, "noshebang", "S="+script)
	if code := fr.run(t); code != 0 || fr.stdout.String() != "got one\ngot two\n" {
		t.Errorf("exit status %d, stdout %q; stderr:\n%s", code, fr.stdout.String(), fr.stderr.Bytes())
	}
}

// A FIFO at path= is visible while the flow runs and removed however it
// ends.
func init() {
	testFlows["fifo-path"] = func() *parser.Graph {
		b := newGraph()
		b.g.Params = []*parser.Param{{Name: "P"}, {Name: "CODE"}}
		b.stage("w", `echo hi; test -p "$P" || echo "no fifo at $P" >&2; exit "$CODE"`)
		b.stage("r", "cat")
		b.edge("w", "r", parser.FIFO, parser.Options{Path: os.Getenv("IPCFLOW_TEST_FIFO")})
		return b.g
	}
}

func TestFIFOPathRemoved(t *testing.T) {
	for _, code := range []string{"0", "3"} {
		fifo := filepath.Join(t.TempDir(), "watch.fifo")
		fr := newFlowRun(t, "fifo-path", "P="+fifo, "CODE="+code)
		fr.cmd.Env = append(fr.cmd.Env, "IPCFLOW_TEST_FIFO="+fifo)
		got := fr.run(t)
		// With exit 3 the reader may be torn down before it prints.
		if want := map[string]int{"0": 0, "3": 3}[code]; got != want || code == "0" && fr.stdout.String() != "hi\n" {
			t.Errorf("exit status %d (want %d), stdout %q, stderr:\n%s", got, want, fr.stdout.String(), fr.stderr.Bytes())
		}
		if strings.Contains(fr.stderr.String(), "no fifo") {
			t.Errorf("the FIFO was not at its path while the flow ran: %s", fr.stderr.Bytes())
		}
		if _, err := os.Lstat(fifo); err == nil {
			t.Errorf("%s left behind (stage exit %s)", fifo, code)
		}
	}
}

func init() {
	testFlows["yes-to-stderr"] = func() *parser.Graph {
		b := newGraph()
		b.stage("a", "yes >&2")
		return b.g
	}
}

// With --label a stage's stderr passes through ipcflow. When whatever reads
// ipcflow's stderr stops, the stage sees a closed pipe and the run ends
// with 0, as `yes >&2 2>&1 | head` does in a shell; ipcflow itself must
// not die of SIGPIPE (Go kills a process on EPIPE writing fd 2 unless it
// is notified of SIGPIPE).
func TestLabelledStderrReaderStops(t *testing.T) {
	fr := newFlowRun(t, "yes-to-stderr", "--label")
	fr.cmd.Stderr = nil
	stderr, err := fr.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := fr.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 9)
	if _, err := io.ReadFull(stderr, head); err != nil || string(head) != "a: y\na: y" {
		t.Fatalf("read %q, %v", head, err)
	}
	stderr.Close()
	if code := exitCode(t, fr.cmd.Wait()); code != 0 {
		t.Errorf("exit status %d, want 0 (the reader finished)", code)
	}
}

// An mmap fan-out that shares one path= and whose branches meet again
// (a diamond) cannot be one file with two cursors: the planner gives each
// branch its own buffer, and the first keeps the recording, which holds
// the whole stream.
func init() {
	testFlows["mmap-record-diamond"] = func() *parser.Graph {
		b := newGraph()
		b.stage("src", "seq 1 20000")
		b.stage("l", "cat")
		b.stage("r", "tac")
		b.stage("d", `paste - "$x"`, "in x")
		rec := parser.Options{Path: os.Getenv("IPCFLOW_TEST_REC")}
		b.edge("src", "l", parser.MMap, rec)
		b.edge("src", "r", parser.MMap, rec)
		b.edge("l", "d", "")
		b.edge("r", "d.x", "")
		return b.g
	}
}

func TestMmapRecordingOfADiamond(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "src.rec")
	fr := newFlowRun(t, "mmap-record-diamond")
	fr.cmd.Env = append(fr.cmd.Env, "IPCFLOW_TEST_REC="+rec)
	check := testkit.LeakCheck(t, fr.runDir)
	if code := fr.run(t); code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, fr.stderr.Bytes())
	}
	if want := testkit.Bash(t, "paste <(seq 1 20000) <(seq 1 20000 | tac)"); !bytes.Equal(fr.stdout.Bytes(), want) {
		t.Errorf("stdout differs from bash's: %d bytes, want %d", fr.stdout.Len(), len(want))
	}
	got, err := os.ReadFile(rec)
	if want := testkit.Bash(t, "seq 1 20000"); err != nil || !bytes.Equal(got, want) {
		t.Errorf("recording %s: %d bytes (err %v), want the whole stream of %d", rec, len(got), err, len(want))
	}
	check()
}

// A run that fails while it sets up (here: a ring larger than /dev/shm)
// removes the mmap path= recording it had already made: it recorded
// nothing, and the file would make the next run fail.
func init() {
	testFlows["setup-fails-after-recording"] = func() *parser.Graph {
		b := newGraph()
		b.stage("p", "echo hi")
		b.stage("c", "cat")
		b.stage("q", "echo x")
		b.stage("d", "cat")
		b.edge("p", "c", parser.MMap, parser.Options{Path: os.Getenv("IPCFLOW_TEST_REC")})
		var fs unix.Statfs_t
		unix.Statfs("/dev/shm", &fs)
		b.edge("q", "d", parser.SHM, parser.Options{Size: int64(fs.Bavail)*fs.Bsize + 1<<30})
		return b.g
	}
}

func TestSetupFailureRemovesRecording(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "p.rec")
	fr := newFlowRun(t, "setup-fails-after-recording")
	fr.cmd.Env = append(fr.cmd.Env, "IPCFLOW_TEST_REC="+rec)
	check := testkit.LeakCheck(t, fr.runDir)
	if code := fr.run(t); code != 1 || !strings.Contains(fr.stderr.String(), "no room") {
		t.Fatalf("exit status %d, want 1 with /dev/shm full; stderr:\n%s", code, fr.stderr.Bytes())
	}
	if _, err := os.Lstat(rec); !os.IsNotExist(err) {
		t.Errorf("the failed run left its recording %s (%v)", rec, err)
	}
	check()
}
