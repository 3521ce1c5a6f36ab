// The leak checks and process scans of runs in child processes, shared by
// the tests of exec and watch.

package testkit

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// MarkedProcs lists the processes whose environment holds mark: a run's
// stages and every descendant that kept its environment.
func MarkedProcs(mark string) []int {
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
			if st, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil && IsZombie(st) {
				continue
			}
			pids = append(pids, pid)
		}
	}
	return pids
}

func IsZombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// WaitNoProcs fails unless no process of the run is left within d.
func WaitNoProcs(t testing.TB, mark string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		pids := MarkedProcs(mark)
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

// LeakCheck snapshots where runs leave things (/dev/shm, /dev/mqueue, the
// private run directory base runBaseDir) and returns a function that fails
// the test if anything of the run's is there afterwards. Other engineers'
// and other packages' runs make objects in /dev/shm at the same time, so an
// object there counts only if its name carries the id of a run seen in
// runBaseDir (polled while the test runs: a run's directory is named by its
// id), and only if it is still there a moment later.
func LeakCheck(t testing.TB, runBaseDir string) func() {
	t.Helper()
	found := RunLeaks(runBaseDir)
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

// RunLeaks is LeakCheck's comparison without the waiting and failing:
// each call lists what is there now and was not before, of the runs seen.
func RunLeaks(runBaseDir string) func() []string {
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

// ipcflowObjects lists what runs leave: ipcflow's objects in /dev/shm and
// /dev/mqueue, runs' cgroups (ipcflow.<id>.procs, wherever contain makes
// them), and run directories under runBaseDir. An unreadable /dev/shm
// holds nothing to compare.
func ipcflowObjects(runBaseDir string) map[string]bool {
	objs := map[string]bool{}
	found, _ := KernelObjects("ipcflow.")
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

// LiveRunIDs lists the ids of the runs alive on this machine, whoever
// started them and wherever their directories are: a run holds its
// manifest (<base>/<id>/manifest, the base being an ipcflow or
// ipcflow-<uid> directory) open for its whole life. A leak check that
// scans kernel objects machine-wide uses it to tell the objects of other
// packages' runs, still going, from what its own runs left. It sees the
// processes /proc lets it read: all of them, as root.
func LiveRunIDs() map[string]bool {
	ids := map[string]bool{}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		target, err := os.Readlink(fd)
		if err != nil || filepath.Base(target) != "manifest" {
			continue
		}
		dir := filepath.Dir(target)
		if strings.HasPrefix(filepath.Base(filepath.Dir(dir)), "ipcflow") {
			ids[filepath.Base(dir)] = true
		}
	}
	return ids
}

// ObjectRunID is the run id in the name of a kernel object at path
// (/dev/shm/ipcflow.<id>.x, /dev/shm/sem.ipcflow.<id>.x, a cgroup
// ipcflow.<id>.procs), or "".
func ObjectRunID(path string) string {
	name := strings.TrimPrefix(filepath.Base(path), "sem.")
	rest, ok := strings.CutPrefix(name, "ipcflow.")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, ".")
	return id
}
