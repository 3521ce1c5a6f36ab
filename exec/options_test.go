package exec

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ipcflow/ipcflow/internal/testkit"
	"github.com/ipcflow/ipcflow/parser"
)

func init() {
	testFlows["sleepy"] = func() *parser.Graph {
		b := newGraph()
		b.stage("nap", "sleep 30")
		b.stage("nap2", "sleep 30 | cat")
		return b.g
	}
	testFlows["labels"] = func() *parser.Graph {
		b := newGraph()
		b.stage("a", "echo one >&2; echo two >&2; echo data")
		b.stage("b", `printf 'x\ny' >&2`)
		return b.g
	}
	testFlows["sems"] = func() *parser.Graph {
		b := newGraph()
		sem := &parser.Sem{Name: "db", Count: 1}
		b.g.Sems = []*parser.Sem{sem}
		b.g.Params = []*parser.Param{{Name: "LOG"}}
		for _, n := range []string{"x", "y", "z"} {
			b.stage(n, `echo `+n+`+ >> "$LOG"; sleep 0.1; echo `+n+`- >> "$LOG"`).Uses = []*parser.Sem{sem}
		}
		b.stage("env", `echo "$IPCFLOW_SEM_DB $IPCFLOW_LOCK_SOCKET"`)
		return b.g
	}
}

func TestTimeout(t *testing.T) {
	fr := newFlowRun(t, "sleepy", "--timeout=300ms", "--grace=1s")
	check := testkit.LeakCheck(t, fr.runDir)
	start := time.Now()
	code := fr.run(t)
	if code != StatusTimeout {
		t.Errorf("exit status %d, want %d; stderr:\n%s", code, StatusTimeout, fr.stderr.Bytes())
	}
	if !strings.Contains(fr.stderr.String(), "ipcflow: timeout") {
		t.Errorf("stderr does not name the timeout:\n%s", fr.stderr.Bytes())
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %v", took)
	}
	check()
	testkit.WaitNoProcs(t, fr.mark, time.Second)
}

func TestLabel(t *testing.T) {
	fr := newFlowRun(t, "labels", "--label")
	if code := fr.run(t); code != 0 {
		t.Fatalf("exit status %d: %s", code, fr.stderr.Bytes())
	}
	lines := strings.Split(strings.TrimSuffix(fr.stderr.String(), "\n"), "\n")
	sort.Strings(lines)
	want := []string{"a: one", "a: two", "b: x", "b: y"}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Errorf("labelled stderr %q, want (in any order between stages) %q", lines, want)
	}
	if strings.Index(fr.stderr.String(), "a: one") > strings.Index(fr.stderr.String(), "a: two") {
		t.Errorf("a stage's lines out of order:\n%s", fr.stderr.Bytes())
	}
	if fr.stdout.String() != "data\n" {
		t.Errorf("stdout %q: --label must not touch it", fr.stdout.String())
	}
}

func TestDryRunStartsNothing(t *testing.T) {
	fr := newFlowRun(t, "cmp-diamond", "--dry-run")
	check := testkit.LeakCheck(t, fr.runDir)
	if code := fr.run(t); code != 0 {
		t.Fatalf("exit status %d: %s", code, fr.stderr.Bytes())
	}
	out := fr.stdout.String()
	for _, want := range []string{
		"e1    pipe   edge src.out -> s.in (fan-out)",
		"tee   p1 (read) -> e1 (write), e2 (write)  (fan-out of src.out)",
		"src: exec ",
		"fd 1 out: p1 (write)",
		"paste: paste /dev/fd/3 /dev/fd/4",
		"fd 3 port a ($a=/dev/fd/3): e3 (read)",
		"fd 4 port b ($b=/dev/fd/4): e4 (read)",
		"fd 2 err: ipcflow's stderr",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "999999") || fr.stderr.Len() > 0 {
		t.Errorf("something ran:\nstdout %s\nstderr %s", out, fr.stderr.Bytes())
	}
	check()
	if ents, _ := os.ReadDir(filepath.Join(fr.runDir, "ipcflow")); len(ents) > 0 {
		t.Errorf("--dry-run made a run directory")
	}
}

func TestSemaphoresSerialise(t *testing.T) {
	log := filepath.Join(t.TempDir(), "log")
	fr := newFlowRun(t, "sems", "LOG="+log)
	check := testkit.LeakCheck(t, fr.runDir)
	if code := fr.run(t); code != 0 {
		t.Fatalf("exit status %d: %s", code, fr.stderr.Bytes())
	}
	b, _ := os.ReadFile(log)
	lines := strings.Fields(string(b))
	if len(lines) != 6 {
		t.Fatalf("log %q: want 6 lines", b)
	}
	for i := 0; i < 6; i += 2 {
		if lines[i][:1] != lines[i+1][:1] || !strings.HasSuffix(lines[i], "+") {
			t.Errorf("critical sections overlap: %q", lines)
		}
	}
	if !regexp.MustCompile(`^/ipcflow\.[0-9a-f]{16}\.db /.*/ipcflow/[0-9a-f]{16}/lock\.sock\n$`).MatchString(fr.stdout.String()) {
		t.Errorf("stage environment: %q", fr.stdout.String())
	}
	check()
}
