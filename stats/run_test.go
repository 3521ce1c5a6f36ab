package stats_test

// The figures of real runs of the ipcflow binary against ground truth:
// bytes equal to the input's size, records equal to the lines that were
// sent one to a message, CPU and memory of stages whose use is known, the
// bottleneck of flows built to have one, the JSON against its schema.

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/ipcflow/ipcflow/internal/testkit"
	"github.com/ipcflow/ipcflow/stats"
)

var long = flag.Bool("long", false, "run the bottleneck cases over every edge type")

func TestMain(m *testing.M) {
	code := m.Run()
	testkit.RemoveIpcflowBuild()
	os.Exit(code)
}

// edgeTypes are every edge type as an arrow's bracket says it.
var edgeTypes = []string{"pipe", "fifo", "mq", "shm", "mmap", "socket", "socket tcp", "socket udp"}

// run is one run of a flow with --stats-json: its figures, what it
// printed, its exit status. Nothing of it may be left behind.
type run struct {
	rep            *stats.Report
	raw            []byte
	stdout, stderr []byte
	code           int
}

func runFlow(t *testing.T, flow string, args ...string) run {
	t.Helper()
	bin := testkit.BuildIpcflow(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "f.ipcflow")
	os.WriteFile(script, []byte(flow), 0o600)
	js := filepath.Join(dir, "stats.json")
	runBase := t.TempDir()
	check := testkit.LeakCheck(t, runBase)
	cmd := osexec.Command(bin, append([]string{"run", "--timeout=120s", "--stats-json", js, script}, args...)...)
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runBase)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*osexec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	check()
	raw, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var rep stats.Report
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("--stats-json: %v\n%s", err, raw)
	}
	return run{&rep, raw, stdout.Bytes(), stderr.Bytes(), code}
}

func (r run) stage(t *testing.T, name string) stats.Stage {
	t.Helper()
	for _, s := range r.rep.Stages {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no stage %s in %s", name, r.raw)
	return stats.Stage{}
}

func arrow(ty string) string { return "-[" + ty + "]->" }

// lines63 is n lines of exactly 63 bytes with their newline: with
// msgsize=64 an mq message holds one line and its trailer byte.
func lines63(n int) []byte {
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%08d %053d\n", i, i)
	}
	return b.Bytes()
}

// Each edge type carries the input whole: its bytes are the input's
// size, whether a bridge counted them or the kernel's I/O of its ends
// tells; the writer's bytes written are the input's size too.
func TestEdgeBytesAreTheInputsSize(t *testing.T) {
	in := lines63(20000) // 1,260,000 bytes
	file := testkit.WriteTemp(t, "in", in)
	for _, ty := range edgeTypes {
		t.Run(strings.ReplaceAll(ty, " ", "-"), func(t *testing.T) {
			t.Parallel()
			r := runFlow(t, "stage src = cat "+file+"\nstage sink = wc -c\nsrc "+arrow(ty)+" sink\n")
			if r.code != 0 || strings.TrimSpace(string(r.stdout)) != fmt.Sprint(len(in)) {
				t.Fatalf("exit %d, printed %q, want 0 and %d\n%s", r.code, r.stdout, len(in), r.stderr)
			}
			e := r.rep.Edges[0]
			if e.Bytes != int64(len(in)) {
				t.Errorf("edge bytes %d (%s), want %d", e.Bytes, e.BytesFrom, len(in))
			}
			if w := r.stage(t, "src").BytesWritten; w != int64(len(in)) {
				t.Errorf("src wrote %d bytes, want %d", w, len(in))
			}
			if rd := r.stage(t, "sink").BytesRead; rd < int64(len(in)) {
				t.Errorf("sink read %d bytes, want at least %d", rd, len(in))
			}
			wantFrom := "counted"
			switch ty {
			case "pipe", "fifo", "socket tcp":
				wantFrom = "writer io"
			}
			if e.BytesFrom != wantFrom {
				t.Errorf("bytes from %q, want %q", e.BytesFrom, wantFrom)
			}
			if e.Type != strings.Replace(ty, "socket", "socket", 1) && !(ty == "socket" && e.Type == "socket unix") {
				t.Errorf("edge type %q, want %q", e.Type, ty)
			}
		})
	}
}

// An mq message holds one 63-byte line when msgsize is 64: the records
// are the lines (and the end-of-stream message).
func TestMqRecordsAreMessages(t *testing.T) {
	in := lines63(3000)
	file := testkit.WriteTemp(t, "in", in)
	r := runFlow(t, "stage src = cat "+file+"\nstage sink = wc -l\nsrc -[mq msgsize=64]-> sink\n")
	if r.code != 0 || strings.TrimSpace(string(r.stdout)) != "3000" {
		t.Fatalf("exit %d, printed %q\n%s", r.code, r.stdout, r.stderr)
	}
	e := r.rep.Edges[0]
	if e.Records == nil || *e.Records != 3000 {
		t.Errorf("records %v, want 3000 (one line a message)\n%s", e.Records, r.raw)
	}
	if e.Bytes != int64(len(in)) {
		t.Errorf("bytes %d, want %d", e.Bytes, len(in))
	}
}

// A stage's CPU time is its process's and its children's, as wait4
// tells: the same busy loop run here directly takes about as long.
func TestStageCPUIsTheCommands(t *testing.T) {
	loop := `awk 'BEGIN { for (i = 0; i < 4000000; i++) s += i % 7; print s }'`
	direct := osexec.Command("sh", "-c", loop)
	if err := direct.Run(); err != nil {
		t.Skip("awk:", err)
	}
	want := direct.ProcessState.UserTime() + direct.ProcessState.SystemTime()
	r := runFlow(t, "stage spin = "+loop+"\n")
	s := r.stage(t, "spin")
	got := time.Duration((s.UserSec + s.SysSec) * float64(time.Second))
	if got < want/3 || got > want*3 {
		t.Errorf("spin's CPU %v, the same loop run directly %v", got, want)
	}
	if s.Status != "exit status 0" || s.State != "done" {
		t.Errorf("status %q state %q", s.Status, s.State)
	}
}

// A stage that holds 200 MiB has a max RSS of at least that.
func TestStageMaxRSS(t *testing.T) {
	if _, err := osexec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed: it makes the stage that allocates")
	}
	r := runFlow(t, "stage big = python3 -c 'b = b\"x\" * (200 << 20); print(len(b))'\n")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if rss := r.stage(t, "big").MaxRSS; rss < 200<<20 || rss > 400<<20 {
		t.Errorf("max rss %d, want 200 MiB and a little", rss)
	}
}

// The bottleneck of flows built to have one, over each edge type (with
// -long; else over a pipe and a bridged type).
func TestBottleneckIsNamed(t *testing.T) {
	big := testkit.WriteTemp(t, "big", bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog 0123456789\n"), 100000))
	cases := []struct {
		name, flow, want, sem string
	}{
		// An awk doing arithmetic for every line between a cat and a wc:
		// long enough (0.5 s and more) for the sampler to tell, on a
		// quiet machine too.
		{"cpu-bound middle",
			"stage src = cat " + big + "\nstage work = awk '{ for (i = 0; i < 200; i++) s += length($0) * i } END { print s }'\nstage sink = wc -c\nsrc ARROW work\nwork ARROW sink\n",
			"work", ""},
		// A reader that takes a line every few milliseconds.
		{"slow consumer",
			"stage src = seq 1 300\nstage mid = cat\nstage slow = while read -r l; do sleep 0.005; done\nsrc ARROW mid\nmid ARROW slow\n",
			"slow", ""},
		// A writer that gives a line every few milliseconds.
		{"trickling producer",
			"stage src = for i in $(seq 1 150); do echo $i; sleep 0.01; done\nstage mid = tr 1 x\nstage sink = wc -l\nsrc ARROW mid\nmid ARROW sink\n",
			"src", ""},
		// Two busy stages that may not run at once.
		{"semaphore",
			"sem s = 1\nstage a uses s = awk 'BEGIN { for (i = 0; i < 3000000; i++) s += i % 7; print s }'\nstage b uses s = awk 'BEGIN { for (i = 0; i < 3000000; i++) s += i % 7; print s }'\nstage ca = cat\nstage cb = cat\na ARROW ca\nb ARROW cb\n",
			"", "s"},
	}
	types := []string{"pipe", "shm"}
	if *long {
		types = edgeTypes
	}
	for _, c := range cases {
		for _, ty := range types {
			t.Run(strings.ReplaceAll(c.name+"/"+ty, " ", "-"), func(t *testing.T) {
				t.Parallel()
				r := runFlow(t, strings.ReplaceAll(c.flow, "ARROW", arrow(ty)))
				if r.code != 0 {
					t.Fatalf("exit %d\n%s", r.code, r.stderr)
				}
				b := r.rep.Bottleneck
				switch {
				case b == nil:
					t.Errorf("no bottleneck named\n%s", r.raw)
				case c.sem != "" && b.Semaphore != c.sem:
					t.Errorf("bottleneck %s, want semaphore %s\n%s", b, c.sem, r.raw)
				case c.want != "" && b.Stage != c.want:
					t.Errorf("bottleneck %s, want %s\n%s", b, c.want, r.raw)
				}
			})
		}
	}
}

// The document matches docs/stats.schema.json, for a flow with every
// kind of edge, a semaphore, a failed stage and a skipped one.
func TestJSONMatchesSchema(t *testing.T) {
	schemaPath := filepath.Join(testkit.ModuleRoot(t), "docs", "stats.schema.json")
	c := jsonschema.NewCompiler()
	sch, err := c.Compile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	var flow strings.Builder
	flow.WriteString("sem s = 1\nstage src uses s = seq 1 1000\n")
	for i, ty := range edgeTypes {
		fmt.Fprintf(&flow, "stage c%d = wc -l\nsrc %s c%d\n", i, arrow(ty), i)
	}
	flow.WriteString("stage bad = exit 3\nstage later after bad = true\n")
	r := runFlow(t, flow.String(), "--keep-going")
	if r.code != 3 {
		t.Fatalf("exit %d, want 3\n%s", r.code, r.stderr)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(r.raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(doc); err != nil {
		t.Errorf("%v\n%s", err, r.raw)
	}
	if r.rep.Status == nil || *r.rep.Status != 3 || r.rep.Live {
		t.Errorf("status %v live %v, want 3 and false", r.rep.Status, r.rep.Live)
	}
	if s := r.stage(t, "later"); s.State != "skipped" || !strings.HasPrefix(s.Status, "skipped") {
		t.Errorf("later: state %q status %q", s.State, s.Status)
	}
	if s := r.stage(t, "bad"); s.Status != "exit status 3" {
		t.Errorf("bad: status %q", s.Status)
	}
	if len(r.rep.Edges) != len(edgeTypes) {
		t.Errorf("%d edges, want %d", len(r.rep.Edges), len(edgeTypes))
	}
}

// --stats prints the table after the run, on stderr, and nothing else
// changes: the same output and status as without it.
func TestStatsTable(t *testing.T) {
	bin := testkit.BuildIpcflow(t)
	script := testkit.WriteTemp(t, "f.ipcflow", []byte("stage a = seq 1 5000\nstage b = grep 7\na -> b\n"))
	cmd := osexec.Command(bin, "run", "--stats", script)
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatal(err, stderr.String())
	}
	want := testkit.Bash(t, "seq 1 5000 | grep 7")
	if !bytes.Equal(stdout.Bytes(), want) {
		t.Errorf("stdout differs from bash's")
	}
	for _, re := range []string{`^stage +status +wall`, `^a +exit status 0 `, `^b +exit status 0 `, `^e1 +a.out -> b.in +pipe +≤[0-9.]+KiB`, `^bottleneck: `, `^measured: [0-9]+ samples?`} {
		if !regexp.MustCompile("(?m)" + re).Match(stderr.Bytes()) {
			t.Errorf("stderr lacks %s:\n%s", re, stderr.Bytes())
		}
	}
}

// A reader that waits before it reads leaves its edge full: the peak fill
// is the buffer's size, for the types whose fill ipcflow can see (at the
// consumer's end of a pipe or fifo, in the ring, in the queue).
func TestPeakFillOfAFullEdge(t *testing.T) {
	big := testkit.WriteTemp(t, "big", bytes.Repeat([]byte("0123456789abcdef\n"), 400000))
	for _, ty := range []string{"pipe", "fifo", "shm", "mq"} {
		t.Run(strings.ReplaceAll(ty, " ", "-"), func(t *testing.T) {
			t.Parallel()
			r := runFlow(t, "stage src = cat "+big+"\nstage slow = { sleep 0.6; wc -c; }\nsrc "+arrow(ty)+" slow\n")
			if r.code != 0 || strings.TrimSpace(string(r.stdout)) != "6800000" {
				t.Fatalf("exit %d, printed %q\n%s", r.code, r.stdout, r.stderr)
			}
			e := r.rep.Edges[0]
			wantFrom := "object"
			if ty == "pipe" || ty == "fifo" {
				wantFrom = "ends"
			}
			if e.FillFrom != wantFrom {
				t.Errorf("fill from %q, want %q", e.FillFrom, wantFrom)
			}
			if e.Capacity <= 0 || e.PeakFill < e.Capacity*9/10 || e.PeakFill > e.Capacity {
				t.Errorf("peak fill %d of %d, want the buffer full\n%s", e.PeakFill, e.Capacity, r.raw)
			}
		})
	}
}

// A run too short to sample names no bottleneck, and says why.
func TestNoBottleneckForAShortRun(t *testing.T) {
	r := runFlow(t, "stage t = true\n")
	if r.rep.Bottleneck != nil || !strings.HasPrefix(r.rep.NoBottleneck, "the run was too short to tell") {
		t.Errorf("bottleneck %v, why none %q", r.rep.Bottleneck, r.rep.NoBottleneck)
	}
}

// Every run answers ps on a socket in its directory, made in the
// background: the shortest runs end while it is being made, and the
// directory must still go with the run, every time.
func TestControlSocketGoesWithTheRun(t *testing.T) {
	bin := testkit.BuildIpcflow(t)
	script := testkit.WriteTemp(t, "t.ipcflow", []byte("stage t = true\n"))
	runBase := t.TempDir()
	for i := 0; i < 150; i++ {
		cmd := osexec.Command(bin, "run", script)
		cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runBase)
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Fatalf("run %d: %v %s", i, err, out)
		}
		if ents, _ := os.ReadDir(filepath.Join(runBase, "ipcflow")); len(ents) > 0 {
			t.Fatalf("run %d left its directory %s behind", i, ents[0].Name())
		}
	}
}
