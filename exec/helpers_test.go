package exec

import (
	"bytes"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ipcflow/ipcflow/contain"
	"github.com/ipcflow/ipcflow/internal/testkit"
)

// flowRun is one run of a test flow in a child process.
type flowRun struct {
	cmd    *osexec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
	mark   string // in the environment of the run and so of every stage
	runDir string // the private XDG_RUNTIME_DIR of the run
}

// newFlowRun prepares a run of test flow name (testFlows) with its own
// run directory base and a marker variable to find its processes by.
func newFlowRun(t *testing.T, name string, args ...string) *flowRun {
	t.Helper()
	path, argv, err := internalCommand("testflow", append([]string{name}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	fr := &flowRun{runDir: t.TempDir()}
	fr.mark = fmt.Sprintf("%s-%d-%d", t.Name(), os.Getpid(), time.Now().UnixNano())
	fr.cmd = osexec.Command(path, argv[1:]...)
	fr.cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+fr.runDir, "IPCFLOW_TEST_MARK="+fr.mark)
	fr.cmd.Stdout = &fr.stdout
	fr.cmd.Stderr = &fr.stderr
	// Every run is checked for leaks when its test ends, whatever else the
	// test checks.
	t.Cleanup(leakCheck(t, fr.runDir))
	// And whatever of it is still running (only if the test failed) goes
	// first, found by its marker.
	t.Cleanup(func() {
		for _, pid := range markedProcs(fr.mark) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return fr
}

// run runs the flow and returns its exit status.
func (fr *flowRun) run(t *testing.T) int {
	t.Helper()
	err := fr.cmd.Run()
	return exitCode(t, err)
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	if ee, ok := err.(*osexec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatalf("run: %v", err)
	return -1
}

// markedProcs lists the processes whose environment holds mark: a run's
// stages and every descendant that kept its environment.
func markedProcs(mark string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	needle := []byte("IPCFLOW_TEST_MARK=" + mark + "\x00")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		if bytes.Contains(env, needle) {
			if st, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil && isZombie(st) {
				continue
			}
			pids = append(pids, pid)
		}
	}
	return pids
}

func isZombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// waitNoProcs fails unless no process of the run is left within d.
func waitNoProcs(t *testing.T, mark string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		pids := markedProcs(mark)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var desc []string
			for _, p := range pids {
				c, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
				desc = append(desc, fmt.Sprintf("%d %q", p, bytes.ReplaceAll(c, []byte{0}, []byte{' '})))
			}
			t.Fatalf("processes of the flow still alive after %v:\n%s", d, strings.Join(desc, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// leakCheck snapshots where runs leave things (/dev/shm, /dev/mqueue, the
// private run directory base runBaseDir) and returns a function that fails
// the test if anything of the run's is there afterwards. Other engineers'
// and other packages' runs make objects in /dev/shm at the same time, so an
// object there counts only if its name carries the id of a run seen in
// runBaseDir (polled while the test runs: a run's directory is named by its
// id), and only if it is still there a moment later.
func leakCheck(t *testing.T, runBaseDir string) func() {
	t.Helper()
	found := leakCheckFunc(runBaseDir)
	return func() {
		t.Helper()
		leaked := found()
		for attempt := 0; len(leaked) > 0 && attempt < 10; attempt++ {
			time.Sleep(100 * time.Millisecond)
			leaked = found()
		}
		if len(leaked) > 0 {
			sort.Strings(leaked)
			t.Errorf("left behind:\n  %s", strings.Join(leaked, "\n  "))
		}
	}
}

// leakCheckFunc is leakCheck's comparison without the waiting and failing:
// each call lists what is there now and was not before, of the runs seen.
func leakCheckFunc(runBaseDir string) func() []string {
	before := ipcflowObjects(runBaseDir)
	var mu sync.Mutex
	ids := map[string]bool{}
	stop := make(chan struct{})
	poll := func() {
		ents, _ := os.ReadDir(filepath.Join(runBaseDir, "ipcflow"))
		mu.Lock()
		for _, e := range ents {
			ids[e.Name()] = true
		}
		mu.Unlock()
	}
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				poll()
			}
		}
	}()
	var once sync.Once
	return func() []string {
		once.Do(func() { close(stop) })
		poll()
		mu.Lock()
		defer mu.Unlock()
		var leaked []string
		for name := range ipcflowObjects(runBaseDir) {
			if before[name] {
				continue
			}
			ours := strings.HasPrefix(name, filepath.Join(runBaseDir, "ipcflow")+"/")
			for id := range ids {
				ours = ours || strings.Contains(name, "ipcflow."+id+".")
			}
			if ours {
				leaked = append(leaked, name)
			}
		}
		return leaked
	}
}

// TestLeakCheckCatchesALeak is the negative control: what a run (seen by
// its directory) leaves must be reported, and another run's objects not.
func TestLeakCheckCatchesALeak(t *testing.T) {
	base := t.TempDir()
	check := leakCheckFunc(base)
	id := fmt.Sprintf("deadbeef%08x", os.Getpid())
	os.MkdirAll(filepath.Join(base, "ipcflow", id), 0o700)
	time.Sleep(20 * time.Millisecond) // the poller sees the run
	ours := "/dev/shm/ipcflow." + id + ".e1"
	theirs := fmt.Sprintf("/dev/shm/ipcflow.0ther%08x.e1", os.Getpid())
	for _, f := range []string{ours, theirs} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Skipf("no /dev/shm: %v", err)
		}
		defer os.Remove(f)
	}
	want := []string{ours, filepath.Join(base, "ipcflow", id)}
	if place, ok := contain.Find(); ok {
		cg := filepath.Join(place.Parent, "ipcflow."+id+".procs")
		if err := os.Mkdir(cg, 0o755); err == nil {
			defer os.Remove(cg)
			want = append(want, cg)
		}
	}
	leaked := check()
	sort.Strings(leaked)
	sort.Strings(want)
	if strings.Join(leaked, " ") != strings.Join(want, " ") {
		t.Fatalf("leak check found %v, want %v", leaked, want)
	}
}

// ipcflowObjects lists what runs leave: ipcflow's objects in /dev/shm and
// /dev/mqueue, runs' cgroups (ipcflow.<id>.procs, wherever contain makes
// them), and run directories under runBaseDir. An unreadable /dev/shm
// holds nothing to compare.
func ipcflowObjects(runBaseDir string) map[string]bool {
	objs := map[string]bool{}
	found, _ := testkit.KernelObjects("ipcflow.")
	for _, p := range found {
		objs[p] = true
	}
	if runBaseDir != "" {
		base := filepath.Join(runBaseDir, "ipcflow")
		ents, _ := os.ReadDir(base)
		for _, e := range ents {
			objs[filepath.Join(base, e.Name())] = true
		}
	}
	return objs
}
