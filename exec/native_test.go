package exec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipcflow/ipcflow/internal/testkit"
)

// Native stages (SPEC 12, exec/native.go), run by the real ipcflow with
// the two native tools as stages: internal/porttool (Go, package native)
// and native/c/testdata/porttool.c (C, ipcflow_port.h), which take the
// same commands, so that every test can put either language at either
// end of an edge.

var nativeTools struct {
	once     sync.Once
	dir      string
	goTool   string
	cTool    string
	err      error
	noGCC    bool
	examples map[string]string
}

// buildNativeTools builds both tools (and the examples) once per test
// binary. A machine without gcc skips the tests that need the C one.
func buildNativeTools(t *testing.T) (goTool, cTool string) {
	t.Helper()
	root := testkit.ModuleRoot(t)
	nativeTools.once.Do(func() {
		dir, err := os.MkdirTemp("", "ipcflow-native-tools-")
		if err != nil {
			nativeTools.err = err
			return
		}
		nativeTools.dir = dir
		nativeTools.goTool = filepath.Join(dir, "gport")
		out, err := osexec.Command("go", "build", "-o", nativeTools.goTool, filepath.Join(root, "internal", "porttool")).CombinedOutput()
		if err != nil {
			nativeTools.err = fmt.Errorf("go build porttool: %v\n%s", err, out)
			return
		}
		nativeTools.examples = map[string]string{"numberlines": filepath.Join(dir, "numberlines")}
		if out, err := osexec.Command("go", "build", "-o", nativeTools.examples["numberlines"], filepath.Join(root, "examples", "native", "numberlines")).CombinedOutput(); err != nil {
			nativeTools.err = fmt.Errorf("go build numberlines: %v\n%s", err, out)
			return
		}
		if _, err := osexec.LookPath("gcc"); err != nil {
			nativeTools.noGCC = true
			return
		}
		nativeTools.cTool = filepath.Join(dir, "cport")
		hdr := filepath.Join(root, "native", "c")
		cc := func(out, src string) error {
			b, err := osexec.Command("gcc", "-O2", "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-o", out, src, "-I", hdr).CombinedOutput()
			if err != nil {
				return fmt.Errorf("gcc %s: %v\n%s", src, err, b)
			}
			return nil
		}
		if nativeTools.err = cc(nativeTools.cTool, filepath.Join(hdr, "testdata", "porttool.c")); nativeTools.err != nil {
			return
		}
		nativeTools.examples["upper"] = filepath.Join(dir, "upper")
		nativeTools.err = cc(nativeTools.examples["upper"], filepath.Join(root, "examples", "native", "upper.c"))
	})
	if nativeTools.err != nil {
		t.Fatal(nativeTools.err)
	}
	if nativeTools.noGCC {
		t.Skip("gcc is not installed: the C side of the native ports cannot be built")
	}
	return nativeTools.goTool, nativeTools.cTool
}

// removeNativeTools removes what buildNativeTools built (TestMain).
func removeNativeTools() {
	if nativeTools.dir != "" {
		os.RemoveAll(nativeTools.dir)
	}
}

// nativeRun runs script (written to a file) with the real ipcflow and
// returns its stdout, stderr and exit status, checking that it left
// nothing behind and took less than limit.
func nativeRun(t *testing.T, script string, limit time.Duration, args ...string) (stdout, stderr []byte, code int) {
	t.Helper()
	bin := testkit.BuildIpcflow(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "flow.ipcflow")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	runBase := t.TempDir()
	check := testkit.LeakCheck(t, runBase)
	cmd := osexec.Command(bin, append([]string{"run", path}, args...)...)
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runBase)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		code = exitCode(t, err)
	case <-time.After(limit):
		cmd.Process.Kill()
		<-done
		t.Fatalf("the flow hung: still running after %v\n%s\nstderr: %s", limit, script, errb.Bytes())
	}
	check()
	return out.Bytes(), errb.Bytes(), code
}

// nativeInput writes data to a file and returns its path.
func nativeInput(t *testing.T, data []byte) string {
	t.Helper()
	return testkit.WriteTemp(t, "input", data)
}

func randomBytes(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// TestNativeBothLanguages: a native writer in C or Go to a native reader
// in C or Go, over shm and mq, carries every input byte for byte as a pipe
// edge between two cats does (which the test runs too).
func TestNativeBothLanguages(t *testing.T) {
	goTool, cTool := buildNativeTools(t)
	inputs := testkit.Inputs()
	inputs["random 6 MiB"] = randomBytes(6<<20, 1)
	tools := map[string]string{"c": cTool, "go": goTool}
	for name, data := range inputs {
		in := nativeInput(t, data)
		pipeOut, _, code := nativeRun(t, fmt.Sprintf("stage src = cat %q\nstage w = cat\nstage r = cat\nsrc -> w -[pipe]-> r\n", in), time.Minute)
		if code != 0 || !bytes.Equal(pipeOut, data) {
			t.Fatalf("%s: the pipe edge itself: status %d, %d bytes of %d", name, code, len(pipeOut), len(data))
		}
		for _, typ := range []string{"shm", "mq", "mmap"} {
			for _, pair := range [][2]string{{"c", "go"}, {"go", "c"}, {"c", "c"}, {"go", "go"}} {
				script := fmt.Sprintf("stage src = cat %q\nstage w native = %s copy - out\nstage r native = %s copy in -\nsrc -> w -[%s size=64KiB]-> r\n",
					in, tools[pair[0]], tools[pair[1]], typ)
				if typ != "shm" {
					script = strings.Replace(script, " size=64KiB", "", 1)
				}
				out, stderr, code := nativeRun(t, script, time.Minute)
				if code != 0 || len(stderr) > 0 {
					t.Errorf("%s over %s, %s writer to %s reader: status %d, stderr %s", name, typ, pair[0], pair[1], code, stderr)
				}
				if !bytes.Equal(out, pipeOut) {
					t.Errorf("%s over %s, %s writer to %s reader: %d bytes (sha %s), the pipe edge gave %d (sha %s)",
						name, typ, pair[0], pair[1], len(out), testkit.Sha(out), len(pipeOut), testkit.Sha(pipeOut))
				}
			}
		}
	}
}

// TestNativeAndPlain: over each type a native end (C and Go in turn)
// talks to a plain stage at the other end, whose side alone is bridged.
func TestNativeAndPlain(t *testing.T) {
	goTool, cTool := buildNativeTools(t)
	data := randomBytes(3<<20, 2)
	in := nativeInput(t, data)
	for _, typ := range []string{"shm", "mq", "mmap"} {
		for lang, tool := range map[string]string{"c": cTool, "go": goTool} {
			scripts := map[string]string{
				"native to plain": fmt.Sprintf("stage src = cat %q\nstage w native = %s copy - out\nstage r = cat\nsrc -> w -[%s]-> r\n", in, tool, typ),
				"plain to native": fmt.Sprintf("stage src = cat %q\nstage r native = %s copy in -\nsrc -[%s]-> r\n", in, tool, typ),
			}
			for what, script := range scripts {
				out, stderr, code := nativeRun(t, script, time.Minute)
				if code != 0 || len(stderr) > 0 || !bytes.Equal(out, data) {
					t.Errorf("%s over %s (%s): status %d, %d bytes of %d, stderr %s", what, typ, lang, code, len(out), len(data), stderr)
				}
			}
		}
	}
}

// TestNativeFanOutShm: one shm ring read by a native reader and a plain
// one at once, each getting the whole stream.
func TestNativeFanOutShm(t *testing.T) {
	goTool, cTool := buildNativeTools(t)
	data := randomBytes(4<<20, 3)
	in := nativeInput(t, data)
	dir := t.TempDir()
	script := fmt.Sprintf(`stage src = cat %q
stage w native = %s copy - out
stage a native = %s copy in - > %q
stage b native = %s sink in > %q
stage c = cat > %q
src -> w -[shm size=128KiB]-> {a, b, c}
`, in, cTool, goTool, filepath.Join(dir, "a"), cTool, filepath.Join(dir, "b"), filepath.Join(dir, "c"))
	_, stderr, code := nativeRun(t, script, time.Minute)
	if code != 0 || len(stderr) > 0 {
		t.Fatalf("status %d, stderr %s", code, stderr)
	}
	for _, f := range []string{"a", "c"} {
		got, _ := os.ReadFile(filepath.Join(dir, f))
		if !bytes.Equal(got, data) {
			t.Errorf("reader %s got %d bytes of %d (sha %s)", f, len(got), len(data), testkit.Sha(got))
		}
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "b")); !strings.HasPrefix(string(got), fmt.Sprint(len(data))+" ") {
		t.Errorf("the C sink counted %q bytes, want %d", got, len(data))
	}
}

// TestNativeWriterKilled: a native writer that SIGKILLs itself in the
// middle of the stream. Its reader, native in either language or plain,
// gets every byte it committed and then an error (a native reader) or
// end of file with the edge's error (a plain one), within a bounded
// time; the flow fails with the writer's status.
func TestNativeWriterKilled(t *testing.T) {
	goTool, cTool := buildNativeTools(t)
	data := randomBytes(8<<20, 4)
	in := nativeInput(t, data)
	const n = 3<<20 + 12345
	readers := map[string]string{"c": cTool + " copy in -", "go": goTool + " copy in -", "plain": "cat"}
	for _, typ := range []string{"shm", "mq", "mmap"} {
		for wl, wt := range map[string]string{"c": cTool, "go": goTool} {
			for rl, rcmd := range readers {
				native := " native"
				if rl == "plain" {
					native = ""
				}
				script := fmt.Sprintf("stage src = cat %q\nstage w native = %s die - out %d\nstage r%s = %s\nsrc -> w -[%s]-> r\n", in, wt, n, native, rcmd, typ)
				start := time.Now()
				out, stderr, code := nativeRun(t, script, 20*time.Second, "--keep-going")
				took := time.Since(start)
				what := fmt.Sprintf("%s writer killed over %s, %s reader", wl, typ, rl)
				// The first failure in time: the writer's SIGKILL, or a
				// native reader's exit on seeing it, whichever ipcflow
				// reaps first.
				if code != 128+9 && (code != 1 || rl == "plain") {
					t.Errorf("%s: status %d, want 137 (or 1 from the reader)\n%s", what, code, stderr)
				}
				if !bytes.Equal(out, data[:n]) {
					t.Errorf("%s: the reader got %d bytes, want the %d the writer wrote", what, len(out), n)
				}
				want := "the writer ended without closing the stream"
				if rl == "plain" {
					want = "the native writer ended without closing the stream"
				}
				if !bytes.Contains(stderr, []byte(want)) || !bytes.Contains(stderr, []byte("stage w: killed by signal SIGKILL")) {
					t.Errorf("%s: stderr does not say so:\n%s", what, stderr)
				}
				if took > 5*time.Second {
					t.Errorf("%s: took %v", what, took)
				}
			}
		}
	}
}

// TestNativeReaderKilled: a native reader killed mid-stream makes its
// native writer see the readers gone (it dies of SIGPIPE, which is no
// failure), never wait for good.
func TestNativeReaderKilled(t *testing.T) {
	goTool, cTool := buildNativeTools(t)
	for _, typ := range []string{"shm", "mq", "mmap"} {
		for wl, wt := range map[string]string{"c": cTool, "go": goTool} {
			script := fmt.Sprintf("stage w native = %s gen out 100000000000 4096\nstage r native = %s die in - 1000000\nw -[%s]-> r\n", wt, cTool, typ)
			out, stderr, code := nativeRun(t, script, 20*time.Second, "--keep-going")
			if code != 128+9 || len(out) != 1000000 || !bytes.Contains(stderr, []byte("stage r: killed by signal SIGKILL")) || bytes.Contains(stderr, []byte("stage w")) {
				t.Errorf("%s writer over %s: status %d, %d bytes, stderr %s", wl, typ, code, len(out), stderr)
			}
		}
	}
}

// TestNativeMessages: over mq, whole messages: each line sent as one
// message by one language is received as one message by the other.
func TestNativeMessages(t *testing.T) {
	goTool, cTool := buildNativeTools(t)
	var lines bytes.Buffer
	for i := range 5000 {
		fmt.Fprintf(&lines, "message %d %s\n", i, strings.Repeat("x", i%300))
	}
	in := nativeInput(t, lines.Bytes())
	for _, pair := range [][2]string{{cTool, goTool}, {goTool, cTool}} {
		script := fmt.Sprintf("stage src = cat %q\nstage s native = %s send out\nstage r native = %s recv in\nsrc -> s -[mq msgsize=512]-> r\n", in, pair[0], pair[1])
		out, stderr, code := nativeRun(t, script, time.Minute)
		if code != 0 || len(stderr) > 0 || !bytes.Equal(out, lines.Bytes()) {
			t.Errorf("%s to %s: status %d, %d bytes of %d, stderr %s", filepath.Base(pair[0]), filepath.Base(pair[1]), code, out, lines.Len(), stderr)
		}
	}
}

// TestNativeVersionMismatch: a description of another protocol version
// is one clear line from either client, and a failed stage.
func TestNativeVersionMismatch(t *testing.T) {
	goTool, cTool := buildNativeTools(t)
	for _, tool := range []string{goTool, cTool} {
		cmd := osexec.Command(tool, "copy", "in", "-")
		cmd.Env = append(os.Environ(), "IPCFLOW_PORT_IN=ipcflow-port/2 shm reader fd=3 life=4 reader=0 readers=1 capacity=4096 name=/dev/shm/x")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if err == nil || len(lines) != 1 || !strings.Contains(lines[0], "IPCFLOW_PORT_IN: port protocol ipcflow-port/2, this client speaks ipcflow-port/1") {
			t.Errorf("%s: err %v, stderr %q", filepath.Base(tool), err, stderr.String())
		}
	}
}

// TestNativeRefusals: what a native stage cannot hold is refused before
// anything starts, one line each, status 2.
func TestNativeRefusals(t *testing.T) {
	for what, tc := range map[string]struct{ script, want string }{
		"fan-in": {"stage a = cat\nstage c = cat\nstage b native = cat\n{a, c} -[shm]-> b\n", "its port in cannot be held by it: several edges join into it"},
		"tee":    {"stage a native = cat\nstage b = cat\nstage c = cat\na -[mq]-> {b, c}\n", "its port out cannot be held by it: its edges are copied through ipcflow"},
	} {
		_, stderr, code := nativeRun(t, tc.script, 20*time.Second)
		lines := strings.Split(strings.TrimSpace(string(stderr)), "\n")
		if code != 2 || len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
			t.Errorf("%s: status %d, stderr %q", what, code, stderr)
		}
	}
}

// TestNativeMmapRecording: a native writer's mmap edge with path= keeps
// the stream as its recording, exactly; a native reader reads it at
// random once it has read it through, in either language; an mmap
// fan-out serves a native and a plain reader.
func TestNativeMmapRecording(t *testing.T) {
	goTool, cTool := buildNativeTools(t)
	data := randomBytes(5<<20+777, 5)
	in := nativeInput(t, data)
	for _, pair := range [][2]string{{cTool, goTool}, {goTool, cTool}} {
		dir := t.TempDir()
		rec := filepath.Join(dir, "rec")
		script := fmt.Sprintf("stage src = cat %q\nstage w native = %s copy - out\nstage r native = %s at in 4000000 123456\nstage p = cat > %q\nsrc -> w -[mmap path=%q]-> {r, p}\n",
			in, pair[0], pair[1], filepath.Join(dir, "plain"), rec)
		out, stderr, code := nativeRun(t, script, time.Minute)
		if code != 0 || len(stderr) > 0 || !bytes.Equal(out, data[4000000:4000000+123456]) {
			t.Errorf("%s to %s: status %d, %d bytes, stderr %s", filepath.Base(pair[0]), filepath.Base(pair[1]), code, len(out), stderr)
		}
		if got, err := os.ReadFile(rec); err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s to %s: the recording has %d bytes of %d (%v)", filepath.Base(pair[0]), filepath.Base(pair[1]), len(got), len(data), err)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "plain")); !bytes.Equal(got, data) {
			t.Errorf("%s to %s: the plain reader got %d bytes of %d", filepath.Base(pair[0]), filepath.Base(pair[1]), len(got), len(data))
		}
	}
}

// TestNativeDryRun: --dry-run shows a native port's descriptors and its
// description, and starts nothing.
func TestNativeDryRun(t *testing.T) {
	out, stderr, code := nativeRun(t, "stage a = cat\nstage b native = cat\nstage c = cat\na -[shm size=8KiB]-> b -[mq maxmsg=4 msgsize=1024]-> c\n", 20*time.Second, "--dry-run")
	if code != 0 {
		t.Fatalf("status %d: %s", code, stderr)
	}
	for _, want := range []string{
		"e1    shm    edge a.out -> b.in [size=8192 native reader]",
		"fd 0 in (native): /dev/null",
		"fd 3 native port in: e1 native reader: the shm object",
		"fd 4 native port in: e1 native reader: its liveness pipe",
		"fd 6 native port out: e2 native writer: its control page",
		"IPCFLOW_PORT_IN=ipcflow-port/1 shm reader fd=3 life=4 reader=0 readers=1 capacity=8192 name=/dev/shm/ipcflow.",
		"IPCFLOW_PORT_OUT=ipcflow-port/1 mq writer fd=5 ctl=6 life=7 maxmsg=4 msgsize=1024 name=/ipcflow.",
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("--dry-run lacks %q:\n%s", want, out)
		}
	}
}

// TestNativeExamples runs every examples/native/*.ipcflow with its
// programs built as its comment says (into a directory of the test's,
// given as BIN=), and compares its output with its `# bash: ` line.
func TestNativeExamples(t *testing.T) {
	buildNativeTools(t)
	root := testkit.ModuleRoot(t)
	bin := testkit.BuildIpcflow(t)
	files, _ := filepath.Glob(filepath.Join(root, "examples", "native", "*.ipcflow"))
	if len(files) == 0 {
		t.Fatal("no examples/native/*.ipcflow")
	}
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		t.Run(filepath.Base(f), func(t *testing.T) {
			want := testkit.Bash(t, bashLine(t, f), testkit.InDir(root))
			runBase := t.TempDir()
			check := testkit.LeakCheck(t, runBase)
			cmd := osexec.Command(bin, "run", rel, "BIN="+nativeTools.dir)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runBase)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if code := exitCode(t, cmd.Run()); code != 0 || stderr.Len() > 0 {
				t.Fatalf("ipcflow run %s: exit status %d\n%s", rel, code, stderr.Bytes())
			}
			if len(want) == 0 || !bytes.Equal(stdout.Bytes(), want) {
				t.Errorf("ipcflow run %s printed\n%s\nbash printed\n%s", rel, stdout.Bytes(), want)
			}
			check()
		})
	}
}

// TestNativeStdio: a native stage between ipcflow's own stdin and stdout
// over the object types (ipcflow copies its stdin into the edge and the
// edge into its stdout).
func TestNativeStdio(t *testing.T) {
	goTool, cTool := buildNativeTools(t)
	data := randomBytes(1<<20+3, 6)
	for _, tc := range []struct{ tool, in, out string }{{goTool, "shm", "mq"}, {cTool, "mmap", "shm"}, {cTool, "mq", "mmap"}} {
		bin := testkit.BuildIpcflow(t)
		path := filepath.Join(t.TempDir(), "flow.ipcflow")
		os.WriteFile(path, []byte(fmt.Sprintf("stage r native = %s copy in out\nstdin -[%s]-> r -[%s]-> stdout\n", tc.tool, tc.in, tc.out)), 0o644)
		runBase := t.TempDir()
		check := testkit.LeakCheck(t, runBase)
		cmd := osexec.Command(bin, "run", path)
		cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runBase)
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil || !bytes.Equal(out, data) {
			t.Errorf("%s -> %s -> %s: %v, %d bytes of %d", tc.in, filepath.Base(tc.tool), tc.out, err, len(out), len(data))
		}
		check()
	}
}

// TestNativeEdgeBytesInStats: --stats counts a native edge's bytes (and
// records for mq) whoever holds its ends: a bridge that sees them, the
// ring's write cursor, or, between two native mq ends, the writer's own
// count in the control page (C and Go clients alike).
func TestNativeEdgeBytesInStats(t *testing.T) {
	goTool, cTool := buildNativeTools(t)
	data := randomBytes(3<<20, 7)
	in := nativeInput(t, data)
	for _, typ := range []string{"shm", "mq", "mmap"} {
		for _, pair := range [][2]string{{cTool, goTool}, {goTool, cTool}, {"", goTool}, {cTool, ""}} {
			w, r := "stage w native = "+pair[0]+" copy - out", "stage r native = "+pair[1]+" copy in -"
			if pair[0] == "" {
				w = "stage w = cat"
			}
			if pair[1] == "" {
				r = "stage r = cat"
			}
			name := fmt.Sprintf("%s/%s-%s", typ, filepath.Base(pair[0]), filepath.Base(pair[1]))
			js := filepath.Join(t.TempDir(), "stats.json")
			out, stderr, code := nativeRun(t, fmt.Sprintf("stage src = cat %q\n%s\n%s\nsrc -> w -[%s]-> r\n", in, w, r, typ), time.Minute, "--stats-json", js)
			if code != 0 || !bytes.Equal(out, data) {
				t.Errorf("%s: status %d, %d bytes of %d\n%s", name, code, len(out), len(data), stderr)
				continue
			}
			raw, err := os.ReadFile(js)
			if err != nil {
				t.Fatal(err)
			}
			var rep struct {
				Edges []struct {
					ID      string
					Bytes   int64
					Records *int64
				}
			}
			if err := json.Unmarshal(raw, &rep); err != nil || len(rep.Edges) != 2 {
				t.Fatalf("%s: %v\n%s", name, err, raw)
			}
			e := rep.Edges[1]
			if e.Bytes != int64(len(data)) {
				t.Errorf("%s: edge %s counted %d bytes, want %d", name, e.ID, e.Bytes, len(data))
			}
			if typ == "mq" && (e.Records == nil || *e.Records < int64(len(data))/8191) {
				t.Errorf("%s: edge %s counted %v messages, want at least %d", name, e.ID, e.Records, len(data)/8191)
			}
		}
	}
}
