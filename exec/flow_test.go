package exec

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"strings"
	"testing"

	"github.com/ipcflow/ipcflow/budget"
	"github.com/ipcflow/ipcflow/channels"
	"github.com/ipcflow/ipcflow/internal/testkit"
	"github.com/ipcflow/ipcflow/parser"
)

// Flows compared byte for byte with the bash pipelines they replace.
// Each flow reads the test's input on ipcflow's stdin (`stdin -> first`).
var compareFlows = []struct {
	name  string
	flow  func(b *graphBuilder)
	bash  string
	input string // "text", "binary", "empty", "nonl"
}{
	{"wordfreq", func(b *graphBuilder) {
		b.stage("words", `tr -cs 'A-Za-z' '\n'`)
		b.stage("lower", "tr 'A-Z' 'a-z'")
		b.stage("count", "sort | uniq -c | sort -rn")
		b.stage("top", `head -n 5`)
		b.edge("stdin", "words", "")
		b.chain("", "words", "lower")
		b.chain(parser.FIFO, "lower", "count")
		b.chain("", "count", "top")
	}, `tr -cs 'A-Za-z' '\n' | tr 'A-Z' 'a-z' | sort | uniq -c | sort -rn | head -n 5`, "text"},
	{"binary-cat", func(b *graphBuilder) {
		b.stage("a", "cat")
		b.stage("b", "cat")
		b.stage("c", "tr '\\000' x")
		b.edge("stdin", "a", "")
		b.chain("", "a", "b")
		b.chain(parser.FIFO, "b", "c")
	}, `cat | cat | tr '\000' x`, "binary"},
	{"binary-nul-kept", func(b *graphBuilder) {
		b.stage("a", "cat")
		b.stage("b", "cat")
		b.edge("stdin", "a", parser.FIFO)
		b.chain("", "a", "b")
	}, `cat | cat`, "binary"},
	{"empty", func(b *graphBuilder) {
		b.stage("a", "sort")
		b.stage("b", "wc -c")
		b.edge("stdin", "a", "")
		b.chain("", "a", "b")
	}, `sort | wc -c`, "empty"},
	{"no-trailing-newline", func(b *graphBuilder) {
		b.stage("a", "cat")
		b.stage("b", "tac")
		b.edge("stdin", "a", "")
		b.chain("", "a", "b")
	}, `cat | tac`, "nonl"},
	{"fan-in-order", func(b *graphBuilder) {
		b.stage("a", "head -n 3")
		b.stage("b", "seq 1 5")
		b.stage("c", "cat -n")
		b.edge("stdin", "a", "")
		b.edge("a", "c", "")
		b.edge("b", "c", "")
	}, `cat <(head -n 3) <(seq 1 5) | cat -n`, "text"},
	{"fan-out-to-stdout", func(b *graphBuilder) {
		b.stage("src", "seq 1 1000")
		b.stage("sum", "paste -sd+")
		b.stage("cnt", "wc -l")
		b.edge("src", "sum", "")
		b.edge("src", "cnt", "")
		b.edge("sum", "stdout", "")
		b.edge("cnt", "stdout", "")
	}, `seq 1 1000 | paste -sd+; seq 1 1000 | wc -l`, "empty"},
	{"port-comm", func(b *graphBuilder) {
		b.stage("words", "tr -cs 'A-Za-z' '\\n' | sort -u")
		b.stage("dict", "printf '%s\\n' the and of a to in | sort -u")
		b.stage("missing", `comm -23 - "$dict"`, "in dict")
		b.edge("stdin", "words", "")
		b.edge("words", "missing", "")
		b.edge("dict", "missing.dict", "")
	}, `tr -cs 'A-Za-z' '\n' | sort -u | comm -23 - <(printf '%s\n' the and of a to in | sort -u)`, "text"},
	{"port-in-shell", func(b *graphBuilder) {
		// The interpreter itself opens /dev/fd/N (a redirection), and a
		// program it starts gets the port's fd at the same number.
		b.stage("feed", "seq 1 5")
		b.stage("read", `while read -r l; do echo "got $l"; done < "$x"; wc -l < "$y"`, "in x", "in y")
		b.edge("feed", "read.x", "")
		b.edge("stdin", "read.y", parser.FIFO)
	}, `while read -r l; do echo "got $l"; done < <(seq 1 5); wc -l`, "text"},
	{"params-and-env", func(b *graphBuilder) {
		b.g.Params = []*parser.Param{{Name: "GREETING", Value: word(`"${NOSUCHVAR:-hello} there"`)}}
		b.g.Envs = []*parser.Env{{Name: "WHO", Value: word(`"$GREETING, world"`)}}
		b.stage("a", `echo "$WHO"`)
		b.stage("b", `printenv GREETING WHO`)
		b.edge("a", "stdout", "")
		b.edge("b", "stdout", "")
	}, `echo "hello there, world"; echo "hello there"; echo "hello there, world"`, "empty"},
	{"background-job", func(b *graphBuilder) {
		// The stage shell's background jobs run to their end (in bash
		// the orphan would finish the same output later).
		b.stage("a", "{ sleep 0.1; echo late; } & echo early")
		b.stage("b", "cat")
		b.edge("a", "b", "")
	}, `{ sleep 0.1; echo late; } & echo early`, "empty"},
	{"stderr-edge", func(b *graphBuilder) {
		b.stage("a", "echo err1 >&2; echo err2 >&2")
		b.stage("b", "sed s/^/got:/")
		b.edge("a.err", "b", "")
	}, `{ echo err1 >&2; echo err2 >&2; } 2>&1 | sed s/^/got:/`, "empty"},
	{"diamond", func(b *graphBuilder) {
		// 6.9 MB: past the tee's 4 MiB in memory, so the branch that
		// paste does not read yet spills to a file.
		b.stage("src", "seq 1 1000000")
		b.stage("s", "sort")
		b.stage("c", "cat")
		b.stage("p", `paste "$a" "$b"`, "in a", "in b")
		b.edge("src", "s", "")
		b.edge("src", "c", "")
		b.edge("s", "p.a", "")
		b.edge("c", "p.b", "")
	}, `paste <(seq 1 1000000 | sort) <(seq 1 1000000)`, "empty"},
}

func testInput(kind string) []byte {
	switch kind {
	case "text":
		words := strings.Fields("the quick brown Fox jumps over The lazy dog and of a to in Pipes carry bytes between processes")
		r := rand.New(rand.NewSource(1))
		var b bytes.Buffer
		for i := 0; i < 20000; i++ {
			b.WriteString(words[r.Intn(len(words))])
			if i%11 == 10 {
				b.WriteString(".\n")
			} else {
				b.WriteString(" ")
			}
		}
		return b.Bytes()
	case "binary":
		r := rand.New(rand.NewSource(2))
		b := make([]byte, 3<<20)
		r.Read(b)
		for i := 0; i < len(b); i += 7 {
			b[i] = 0
		}
		return b
	case "nonl":
		return []byte("first\nsecond\nlast line without newline")
	}
	return nil
}

func init() {
	for _, c := range compareFlows {
		c := c
		testFlows["cmp-"+c.name] = func() *parser.Graph {
			b := newGraph()
			c.flow(b)
			return b.g
		}
	}
}

func TestFlowsMatchBash(t *testing.T) {
	for _, c := range compareFlows {
		t.Run(c.name, func(t *testing.T) {
			in := testInput(c.input)
			want := testkit.Bash(t, c.bash, testkit.Stdin(in))
			fr := newFlowRun(t, "cmp-"+c.name)
			check := testkit.LeakCheck(t, fr.runDir)
			fr.cmd.Stdin = bytes.NewReader(in)
			if code := fr.run(t); code != 0 {
				t.Fatalf("exit status %d\nstderr:\n%s", code, fr.stderr.Bytes())
			}
			if !bytes.Equal(fr.stdout.Bytes(), want) {
				t.Errorf("output differs from bash's (%d vs %d bytes)\nipcflow: %.300q\nbash:    %.300q",
					fr.stdout.Len(), len(want), fr.stdout.Bytes(), want)
			}
			if fr.stderr.Len() > 0 {
				t.Errorf("ipcflow was not quiet on success: %s", fr.stderr.Bytes())
			}
			check()
			testkit.WaitNoProcs(t, fr.mark, 0)
		})
	}
}

// A 256 MiB stream through five stages (pipe and fifo edges), checked by
// hash against bash.
func init() {
	testFlows["big"] = func() *parser.Graph {
		b := newGraph()
		b.stage("gen", "yes 'Pipes carry bytes between processes 0123456789'")
		b.stage("cut", "head -c 268435456")
		b.stage("up", "tr a-z A-Z")
		b.stage("rev", "tr 0-9 a-j")
		b.stage("hash", "sha256sum")
		b.chain("", "gen", "cut", "up")
		b.chain(parser.FIFO, "up", "rev")
		b.chain("", "rev", "hash")
		return b.g
	}
}

func TestFlow256MiBMatchesBash(t *testing.T) {
	if !*long {
		t.Skip("a 256 MiB stream: run with -long (.ci/run does)")
	}
	want := testkit.Bash(t, `yes 'Pipes carry bytes between processes 0123456789' | head -c 268435456 | tr a-z A-Z | tr 0-9 a-j | sha256sum`)
	fr := newFlowRun(t, "big")
	check := testkit.LeakCheck(t, fr.runDir)
	if code := fr.run(t); code != 0 {
		t.Fatalf("exit status %d: %s", code, fr.stderr.Bytes())
	}
	if fr.stdout.String() != string(want) {
		t.Errorf("sha256 %q, bash %q", fr.stdout.String(), want)
	}
	check()
}

// fd hygiene: a stage sees its own fds and nothing else, whether exec'd
// directly or run by the stage shell, even when ipcflow inherited extra fds.
func init() {
	testFlows["fds"] = func() *parser.Graph {
		b := newGraph()
		b.stage("direct", "ls /proc/self/fd")
		b.stage("shell", "ls /proc/self/fd | cat")
		b.stage("ports", `ls /proc/self/fd; cat "$x" >/dev/null`, "in x")
		b.stage("feed", "echo hi")
		b.edge("feed", "ports.x", "")
		b.edge("direct", "stdout", "")
		b.edge("shell", "stdout", "")
		b.edge("ports", "stdout", "")
		return b.g
	}
}

func TestStagesSeeOnlyTheirFds(t *testing.T) {
	fr := newFlowRun(t, "fds")
	extra, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	fr.cmd.ExtraFiles = []*os.File{extra, extra, extra} // fds 3, 4, 5 of ipcflow
	if code := fr.run(t); code != 0 {
		t.Fatalf("exit status %d: %s", code, fr.stderr.Bytes())
	}
	// ls opens the directory it lists: one fd past the stage's own.
	want := "0\n1\n2\n3\n" + "0\n1\n2\n3\n" + "0\n1\n2\n3\n4\n"
	if got := fr.stdout.String(); got != want {
		t.Errorf("fds seen by the stages:\n%s\nwant:\n%s", got, want)
	}
}

// stdin -> stdout copies all of stdin even though no stage reads it.
func TestStdinToStdout(t *testing.T) {
	in := testInput("binary")
	fr := newFlowRun(t, "stdin-stdout")
	fr.cmd.Stdin = bytes.NewReader(in)
	if code := fr.run(t); code != 0 {
		t.Fatalf("exit status %d: %s", code, fr.stderr.Bytes())
	}
	if !bytes.Equal(fr.stdout.Bytes(), in) || fr.stderr.String() != "from a\n" {
		t.Errorf("stdout %d bytes of %d, stderr %q", fr.stdout.Len(), len(in), fr.stderr.String())
	}
}

// Random chains of filters over random edge types (all of them), against
// bash: the
// chain comes to the child in IPCFLOW_TEST_CHAIN as "TYPE|COMMAND" lines.
func init() {
	testFlows["chain"] = func() *parser.Graph {
		b := newGraph()
		var prev string
		for i, line := range strings.Split(os.Getenv("IPCFLOW_TEST_CHAIN"), "\n") {
			typ, cmd, _ := strings.Cut(line, "|")
			name := fmt.Sprintf("s%d", i)
			b.stage(name, cmd)
			if i == 0 {
				b.edge("stdin", name, parser.EdgeType(typ))
			} else {
				b.edge(prev, name, parser.EdgeType(typ))
			}
			prev = name
		}
		return b.g
	}
}

func TestRandomChainsMatchBash(t *testing.T) {
	filters := []string{
		"sort", "sort -r", "uniq -c", "tr a-z A-Z", "tac", "cat", "head -n 50",
		"tail -n 70", "sed /e/d", "cut -c1-12", "awk '{print $2, $1}'", "sort | uniq",
		"tr -d aeiou", "sed s/o/0/g", "cat -n",
	}
	types := []string{"pipe", "pipe", "fifo", "mq", "shm", "mmap", "socket"}
	r := rand.New(rand.NewSource(3))
	in := testInput("text")
	for n := 0; n < 30; n++ {
		var lines, cmds []string
		for k := 0; k < 2+r.Intn(5); k++ {
			f := filters[r.Intn(len(filters))]
			lines = append(lines, types[r.Intn(len(types))]+"|"+f)
			cmds = append(cmds, f)
		}
		script := strings.Join(cmds, " | ")
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			want := testkit.Bash(t, script, testkit.Stdin(in))
			fr := newFlowRun(t, "chain")
			fr.cmd.Env = append(fr.cmd.Env, "IPCFLOW_TEST_CHAIN="+strings.Join(lines, "\n"))
			fr.cmd.Stdin = bytes.NewReader(in)
			if code := fr.run(t); code != 0 {
				t.Fatalf("%s: exit status %d: %s", script, code, fr.stderr.Bytes())
			}
			if !bytes.Equal(fr.stdout.Bytes(), want) {
				t.Errorf("%s (%q): output differs from bash's (%d vs %d bytes)", script, lines, fr.stdout.Len(), len(want))
			}
		})
	}
}

// Random diamonds: a stream fanned out to two filters over random edge
// types (a tee, or one shm ring with two readers), joined in order into a
// third, against bash's
// `cat <({ A; } < in) <({ B; } < in) | C`.
func init() {
	testFlows["diamond"] = func() *parser.Graph {
		b := newGraph()
		parts := strings.Split(os.Getenv("IPCFLOW_TEST_DIAMOND"), "\n")
		t := func(i int) parser.EdgeType { return parser.EdgeType(parts[i]) }
		b.stage("src", "cat")
		b.stage("a", parts[4])
		b.stage("b", parts[5])
		b.stage("c", parts[6])
		b.edge("stdin", "src", "")
		b.edge("src", "a", t(0))
		b.edge("src", "b", t(1))
		b.edge("a", "c", t(2))
		b.edge("b", "c", t(3))
		return b.g
	}
}

func TestRandomDiamondsMatchBash(t *testing.T) {
	filters := []string{"sort", "tac", "cat", "head -n 40", "tail -n 30", "sed /e/d", "uniq -c", "tr a-z A-Z", "sort -r | head -n 5"}
	// shm twice: both branches shm is one channel with two readers.
	types := []string{"pipe", "fifo", "mq", "shm", "shm", "mmap", "socket"}
	r := rand.New(rand.NewSource(4))
	in := testInput("text")
	file := t.TempDir() + "/in"
	if err := os.WriteFile(file, in, 0o600); err != nil {
		t.Fatal(err)
	}
	for n := 0; n < 15; n++ {
		var parts []string
		for k := 0; k < 4; k++ {
			parts = append(parts, types[r.Intn(len(types))])
		}
		for k := 0; k < 3; k++ {
			parts = append(parts, filters[r.Intn(len(filters))])
		}
		if n == 0 {
			parts[0], parts[1] = "shm", "shm" // surely once: one ring, two readers
		}
		script := fmt.Sprintf("cat <({ %s; } < %s) <({ %s; } < %s) | %s", parts[4], file, parts[5], file, parts[6])
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			want := testkit.Bash(t, script)
			fr := newFlowRun(t, "diamond")
			fr.cmd.Env = append(fr.cmd.Env, "IPCFLOW_TEST_DIAMOND="+strings.Join(parts, "\n"))
			fr.cmd.Stdin = bytes.NewReader(in)
			if code := fr.run(t); code != 0 {
				t.Fatalf("%q: exit status %d: %s", parts, code, fr.stderr.Bytes())
			}
			if !bytes.Equal(fr.stdout.Bytes(), want) {
				t.Errorf("%q: output differs from bash's (%d vs %d bytes)", parts, fr.stdout.Len(), len(want))
			}
		})
	}
}

// Twenty mq edges: at the default size nine queues use up RLIMIT_MSGQUEUE
// (819,200 bytes), so the run must size them to fit the budget together.
func init() {
	testFlows["mq20"] = func() *parser.Graph {
		b := newGraph()
		names := []string{"gen"}
		b.stage("gen", "seq 1 200000")
		for i := 1; i <= 20; i++ {
			names = append(names, fmt.Sprintf("c%d", i))
			b.stage(names[i], "cat")
		}
		b.chain(parser.MQ, names...)
		return b.g
	}
}

func TestTwentyMQEdgesFitTheBudget(t *testing.T) { runMQ20(t) }

// runMQ20 runs the mq20 flow and compares its output with bash's.
func runMQ20(t *testing.T) {
	t.Helper()
	want := testkit.Bash(t, "seq 1 200000")
	fr := newFlowRun(t, "mq20")
	if code := fr.run(t); code != 0 {
		t.Fatalf("exit status %d: %s", code, fr.stderr.Bytes())
	}
	if testkit.Sha(fr.stdout.Bytes()) != testkit.Sha(want) {
		t.Errorf("output differs from bash (%d vs %d bytes)", fr.stdout.Len(), len(want))
	}
}

// A fan-out over one multi-reader channel (shm keeps the data once) whose
// branches meet again: the join reads d before c, so c's output backs up
// and c stops reading the ring. With one ring the writer waits for c and
// d never ends; the plan must use a spilling Tee instead.
func init() {
	testFlows["shm-rejoin"] = func() *parser.Graph {
		b := newGraph()
		b.stage("a", "seq 1 2000000")
		b.stage("c", "cat")
		b.stage("d", "tail -n 1")
		b.edge("a", "c", parser.SHM)
		b.edge("a", "d", parser.SHM)
		b.edge("d", "stdout", "")
		b.edge("c", "stdout", "")
		return b.g
	}
	// b runs after a and reads a's output: nothing reads the edge while a
	// writes it, so it must be buffered to its end.
	for _, typ := range []parser.EdgeType{parser.Pipe, parser.FIFO, parser.SHM} {
		testFlows["after-reader-"+string(typ)] = func() *parser.Graph {
			b := newGraph()
			b.stage("a", "seq 1 1000000")
			b.stage("b", "wc -l").After = []*parser.Stage{b.find("a")}
			b.edge("a", "b", typ)
			return b.g
		}
	}
}

func init() {
	// c runs after a, and reads a only through b: b fills its pipe to c,
	// stops reading a, and a never ends (the random-graph test found it).
	// Its twin, after a stage tied to b's producer only through c, must
	// not buffer: nothing waits on b's edge.
	testFlows["after-upstream"] = func() *parser.Graph {
		b := newGraph()
		b.stage("a", "seq 1 1000000")
		b.stage("b", "tr 0-9 a-j")
		b.stage("c", "wc -c").After = []*parser.Stage{b.find("a")}
		b.edge("a", "b", parser.Pipe)
		b.edge("b", "c", parser.Pipe)
		return b.g
	}
}

func TestAfterStageUpstreamOfItsProducer(t *testing.T) {
	want := testkit.Bash(t, "seq 1 1000000 | tr 0-9 a-j | wc -c")
	fr := newFlowRun(t, "after-upstream", "--timeout=60s")
	if code := fr.run(t); code != 0 {
		t.Fatalf("exit status %d: %s", code, fr.stderr.Bytes())
	}
	if fr.stdout.String() != string(want) {
		t.Errorf("got %q, bash %q", fr.stdout.String(), want)
	}
}

func TestFanOutBranchesThatMeetDoNotDeadlock(t *testing.T) {
	want := testkit.Bash(t, "seq 1 2000000 | tail -n 1; seq 1 2000000")
	fr := newFlowRun(t, "shm-rejoin", "--timeout=60s")
	if code := fr.run(t); code != 0 {
		t.Fatalf("exit status %d: %s", code, fr.stderr.Bytes())
	}
	if testkit.Sha(fr.stdout.Bytes()) != testkit.Sha(want) {
		t.Errorf("output differs from bash (%d vs %d bytes)", fr.stdout.Len(), len(want))
	}
}

func TestAfterStageReadingItsProducer(t *testing.T) {
	want := testkit.Bash(t, "seq 1 1000000 | wc -l")
	for _, typ := range []string{"pipe", "fifo", "shm"} {
		t.Run(typ, func(t *testing.T) {
			fr := newFlowRun(t, "after-reader-"+typ, "--timeout=60s")
			if code := fr.run(t); code != 0 {
				t.Fatalf("exit status %d: %s", code, fr.stderr.Bytes())
			}
			if fr.stdout.String() != string(want) {
				t.Errorf("got %q, bash %q", fr.stdout.String(), want)
			}
		})
	}
}

// Twenty mq edges while another run of the same user holds half of
// RLIMIT_MSGQUEUE: the plan sizes the queues for the whole budget, and
// Open shrinks what the script left unset to what is really left.
func TestTwentyMQEdgesBesideAnotherRun(t *testing.T) {
	l := budget.ReadMQLimits()
	if l.Budget < 0 {
		t.Skip("RLIMIT_MSGQUEUE is unlimited here")
	}
	env := channels.Env{RunDir: t.TempDir(), Prefix: fmt.Sprintf("ipcflowtest.%d.", os.Getpid()), Record: func(string, string) error { return nil }}
	fixed := channels.Options{MaxMsg: l.MsgDefault, MsgSize: l.MsgsizeDefault}
	for i := range l.Budget / 2 / budget.MQCost(fixed.MaxMsg, fixed.MsgSize) {
		ch, err := channels.Open(env, channels.Spec{ID: fmt.Sprintf("other%d", i), Type: "mq", Readers: 1, Options: fixed})
		if err != nil {
			t.Skipf("other queues of this user hold part of the budget already: %v", err)
		}
		defer ch.Close()
	}
	runMQ20(t)
}

func init() {
	// The join into stdout reads s3 before s5; s3 runs after s2, and s2
	// writes into s5: s5 must be read ahead, or s5 fills its pipe to the
	// join, s2 its pipe to s5, and nothing ends (the random-graph test
	// found it).
	testFlows["join-waits-behind"] = func() *parser.Graph {
		b := newGraph()
		b.stage("s0", "awk 'BEGIN { for (i = 0; i < 40000; i++) print i % 7, i }'")
		b.stage("s1", "uniq -c")
		b.stage("s2", `sort "$p"`, "in p").After = []*parser.Stage{b.find("s1")}
		b.stage("s3", "awk '{ s += length($0) } END { print NR, s }'").After = []*parser.Stage{b.find("s2")}
		b.stage("s5", "cat")
		b.edge("s0", "s1", parser.Pipe)
		b.edge("s1", "s2.p", parser.Pipe)
		b.edge("s1", "s3", parser.Pipe)
		b.edge("s2", "s5", parser.Pipe)
		b.edge("s3", "stdout", parser.Pipe)
		b.edge("s5", "stdout", parser.Pipe)
		return b.g
	}
}

func TestJoinSourceReadBehindAnAfterStage(t *testing.T) {
	want := testkit.Bash(t, `o=$(awk 'BEGIN { for (i = 0; i < 40000; i++) print i % 7, i }' | uniq -c)
printf '%s\n' "$o" | awk '{ s += length($0) } END { print NR, s }'; printf '%s\n' "$o" | sort`)
	fr := newFlowRun(t, "join-waits-behind", "--timeout=20s")
	if code := fr.run(t); code != 0 {
		t.Fatalf("exit status %d: %s", code, fr.stderr.Bytes())
	}
	if testkit.Sha(fr.stdout.Bytes()) != testkit.Sha(want) {
		t.Errorf("output differs from bash (%d vs %d bytes)", fr.stdout.Len(), len(want))
	}
}
