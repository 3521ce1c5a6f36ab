package stats_test

// What a user sees of a run while it runs: ipcflow ps from another
// terminal on a flow that hangs, and --monitor in a real terminal.

import (
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

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/ipcflow/ipcflow/internal/testkit"
	"github.com/ipcflow/ipcflow/stats"
)

// A flow that hangs: b takes one line and sleeps, so a blocks writing a
// full e1 and c waits on an empty e2. ps names each stage's wait.
func TestPsShowsAHungFlow(t *testing.T) {
	r := startLiveRun(t, "hang.ipcflow", "stage a = seq 1 1000000\nstage b = { head -1; sleep 1000; }\nstage c = cat\na -> b\nb -> c\n")
	ps, flow, stderr, check, pid := r.ps, r.flow, &r.stderr, r.check, r.pid
	// Wait for the hang: e1 full, b asleep.
	view := r.await("the hang", func(out string) bool {
		return strings.Contains(out, "fill full") && strings.Contains(out, "(sleeping)")
	})
	for _, re := range []string{
		`(?m)^/.*/hang\.ipcflow +run [0-9a-f]{16} +pid ` + pid,
		`(?m)^  a +pid [0-9]+ +writing e1`,
		`(?m)^  b +pid [0-9]+ +elsewhere \(sleeping\)`,
		`(?m)^  c +pid [0-9]+ +reading e2`,
		`(?m)^  e1 a\.out -> b\.in +pipe .*fill full$`,
		`(?m)^  e2 b\.out -> c\.in +pipe .*fill not full$`,
	} {
		if !regexp.MustCompile(re).MatchString(view) {
			t.Errorf("ps %s lacks %s:\n%s", pid, re, view)
		}
	}
	list, code := ps()
	if code != 0 || !regexp.MustCompile(`(?m)^[0-9a-f]{16} +`+pid+` +[0-9.]+m?s +3/3 running +.*hang\.ipcflow$`).MatchString(list) {
		t.Errorf("ps (exit %d) does not list the run:\n%s", code, list)
	}
	// Other users of this machine's temp directory may list runs too.
	id := regexp.MustCompile(`(?m)^([0-9a-f]{16}) +` + pid + ` `).FindStringSubmatch(list)
	if id == nil {
		t.Fatalf("no run id in:\n%s", list)
	}
	js, code := ps("--json", id[1][:6])
	var rep stats.Report
	if err := json.Unmarshal([]byte(js), &rep); code != 0 || err != nil {
		t.Fatalf("ps --json: exit %d, %v\n%s", code, err, js)
	}
	if !rep.Live || rep.Status != nil || len(rep.Stages) != 3 || rep.Stages[0].Doing != "writing e1" {
		t.Errorf("ps --json: live %v status %v stages %+v", rep.Live, rep.Status, rep.Stages)
	}
	validate(t, []byte(js))

	flow.Process.Signal(syscall.SIGTERM)
	err := flow.Wait()
	if ee, ok := err.(*osexec.ExitError); !ok || ee.ExitCode() != 143 {
		t.Errorf("after SIGTERM: %v, want exit status 143\n%s", err, stderr.Bytes())
	}
	check()
	if out, _ := ps(pid); !strings.Contains(out, "no live run") {
		t.Errorf("ps of an ended run: %s", out)
	}
}

// liveRun is a flow left running for ipcflow ps to look at.
type liveRun struct {
	t      *testing.T
	bin    string
	env    []string
	flow   *osexec.Cmd
	stderr bytes.Buffer
	pid    string
	check  func() // nothing of the run is left (testkit.LeakCheck)
}

// startLiveRun starts script (named name) in a run directory of its own;
// the test ends it.
func startLiveRun(t *testing.T, name, script string) *liveRun {
	r := &liveRun{t: t, bin: testkit.BuildIpcflow(t)}
	runBase := t.TempDir()
	r.check = testkit.LeakCheck(t, runBase)
	r.env = append(os.Environ(), "XDG_RUNTIME_DIR="+runBase)
	r.flow = osexec.Command(r.bin, "run", testkit.WriteTemp(t, name, []byte(script)))
	r.flow.Env = r.env
	r.flow.Stdout, r.flow.Stderr = &bytes.Buffer{}, &r.stderr
	if err := r.flow.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.flow.Process.Kill() })
	r.pid = fmt.Sprint(r.flow.Process.Pid)
	return r
}

// ps runs ipcflow ps with args: its output and exit status.
func (r *liveRun) ps(args ...string) (string, int) {
	cmd := osexec.Command(r.bin, append([]string{"ps"}, args...)...)
	cmd.Env = r.env
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*osexec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	return string(out), 0
}

// await returns `ps PID` once it shows what (done says so), or fails the
// test after 20 s.
func (r *liveRun) await(what string, done func(view string) bool) string {
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, code := r.ps(r.pid)
		if code == 0 && done(out) {
			return out
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("ps %s never showed %s:\n%s", r.pid, what, out)
		}
	}
}

func validate(t *testing.T, raw []byte) {
	t.Helper()
	sch, err := jsonschema.NewCompiler().Compile(filepath.Join(testkit.ModuleRoot(t), "docs", "stats.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(doc); err != nil {
		t.Errorf("%v\n%s", err, raw)
	}
}

// tmux drives a real terminal: --monitor draws its view at the bottom,
// the figures move, the flow's own output scrolls above it intact, and at
// the end the view is gone, the table is there and the terminal scrolls
// as before (the scroll region is given back).
func TestMonitorInATerminal(t *testing.T) {
	if _, err := osexec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed (.ci/run installs it): no terminal to drive")
	}
	bin := testkit.BuildIpcflow(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "mon.ipcflow")
	os.WriteFile(script, []byte("stage src = for i in $(seq 1 40); do seq 1 20000; echo tick $i >&2; sleep 0.05; done\nstage mid = tr 1 x\nstage sink = wc -l\nsrc -> mid\nmid -> sink\n"), 0o600)
	sock := "ipcflow-test-" + fmt.Sprint(os.Getpid())
	tmux := func(args ...string) string {
		out, err := osexec.Command("tmux", append([]string{"-L", sock, "-f", "/dev/null"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	tmux("new-session", "-d", "-s", "m", "-x", "120", "-y", "30", "env", "-i", "PATH="+os.Getenv("PATH"), "TERM=xterm", "PS1=$ ", "XDG_RUNTIME_DIR="+dir, "bash", "--norc", "--noprofile")
	defer osexec.Command("tmux", "-L", sock, "kill-server").Run()
	tmux("send-keys", "-t", "m", "cd "+dir+" && "+bin+" run --monitor mon.ipcflow; echo EXIT=$?", "Enter")
	capture := func() string { return tmux("capture-pane", "-t", "m", "-p") }
	e1 := regexp.MustCompile(`(?m)^  e1 src\.out -> mid\.in +pipe +≤([0-9.]+[KM]iB)`)
	var first, moved string
	for deadline := time.Now().Add(20 * time.Second); moved == "" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		m := e1.FindStringSubmatch(capture())
		switch {
		case m == nil:
		case first == "":
			first = m[1]
		case m[1] != first:
			moved = m[1]
		}
	}
	if moved == "" {
		t.Fatalf("the view's bytes for e1 never moved (first %q):\n%s", first, capture())
	}
	live := capture()
	lines := strings.Split(strings.TrimRight(live, "\n"), "\n")
	if len(lines) != 30 || !strings.HasPrefix(lines[29], "  e2 mid.out -> sink.in") || !strings.Contains(lines[24], "run ") {
		t.Errorf("the view is not in the last rows:\n%s", live)
	}
	if !strings.Contains(live, "tick 3") {
		t.Errorf("the stages' stderr is not above the view:\n%s", live)
	}
	var end string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if end = capture(); regexp.MustCompile(`(?m)^EXIT=[0-9]+$`).MatchString(end) {
			break
		}
	}
	if !strings.Contains(end, "\nEXIT=0\n") {
		t.Fatalf("the run did not end with 0:\n%s", end)
	}
	for _, want := range []string{"tick 40\n800000\n", "\nbottleneck: src", "\nmeasured: "} {
		if !strings.Contains(end, want) {
			t.Errorf("after the run the terminal lacks %q:\n%s", want, end)
		}
	}
	if regexp.MustCompile(`(?m)run [0-9a-f]{16} +pid`).MatchString(end) {
		t.Errorf("the view is still on the terminal:\n%s", end)
	}
	// The whole terminal scrolls again: 60 lines push everything up to
	// the last row.
	tmux("send-keys", "-t", "m", "clear; seq 1 60", "Enter")
	time.Sleep(500 * time.Millisecond)
	rows := strings.Split(strings.TrimRight(capture(), "\n"), "\n")
	if len(rows) < 29 || rows[len(rows)-2] != "60" {
		t.Errorf("the terminal does not scroll to its last row after the run:\n%s", strings.Join(rows, "\n"))
	}
}
