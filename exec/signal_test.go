package exec

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ipcflow/ipcflow/internal/testkit"
	"github.com/ipcflow/ipcflow/parser"
)

// A flow that runs until stopped, with grandchildren (a shell stage's
// pipeline), a FIFO in the run directory and a semaphore in /dev/shm.
func init() {
	testFlows["long"] = func() *parser.Graph {
		b := newGraph()
		sem := &parser.Sem{Name: "db", Count: 1}
		b.g.Sems = []*parser.Sem{sem}
		b.stage("gen", "yes")
		b.stage("slow", "yes | sleep 100")
		b.stage("sink", "cat > /dev/null")
		b.stage("waiter", "sleep 100").Uses = []*parser.Sem{sem}
		b.edge("gen", "sink", parser.FIFO)
		return b.g
	}
}

// startLong starts the long flow and waits until its processes are up. It
// returns the run and its leak check.
func startLong(t *testing.T) (*flowRun, func()) {
	t.Helper()
	fr := newFlowRun(t, "long", "--grace=2s")
	check := testkit.LeakCheck(t, fr.runDir)
	t.Cleanup(func() {
		// If the test failed, take down what is left of this run (found by
		// its marker), so that it does not outlive the test.
		for _, pid := range testkit.MarkedProcs(fr.mark) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	// Files, not buffers: a survivor holding a pipe to the test would make
	// Wait wait for it, and hide it.
	out, err := os.Create(t.TempDir() + "/out")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	fr.cmd.Stdout, fr.cmd.Stderr = out, out
	if err := fr.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(testkit.MarkedProcs(fr.mark)) < 6 { // ipcflow, guardian, gen, slow's shell, yes, sleep, sink, waiter
		if time.Now().After(deadline) {
			fr.cmd.Process.Kill()
			t.Fatalf("the flow did not start: %d processes", len(testkit.MarkedProcs(fr.mark)))
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	return fr, check
}

func TestSignalStopsTheFlow(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			fr, check := startLong(t)
			start := time.Now()
			fr.cmd.Process.Signal(sig)
			code := exitCode(t, fr.cmd.Wait())
			stderr, _ := os.ReadFile(fr.cmd.Stdout.(*os.File).Name())
			if want := 128 + int(sig); code != want {
				t.Errorf("exit status %d, want %d; stderr:\n%s", code, want, stderr)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("took %v to stop", took)
			}
			testkit.WaitNoProcs(t, fr.mark, time.Second)
			check()
		})
	}
}

func TestSIGKILLLeavesNothing(t *testing.T) {
	fr, check := startLong(t)
	fr.cmd.Process.Signal(syscall.SIGKILL)
	start := time.Now()
	fr.cmd.Wait()
	if took := time.Since(start); took > time.Second {
		t.Errorf("ipcflow's outputs stayed open %v after its SIGKILL: a survivor held them", took)
	}
	// The guardian kills every stage's group at once; allow a second.
	testkit.WaitNoProcs(t, fr.mark, time.Second)
	// The guardian removes the run's objects once ipcflow's lock is free;
	// check waits a second more for stragglers.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if ents, _ := os.ReadDir(filepath.Join(fr.runDir, "ipcflow")); len(ents) == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	check()
}

// ^Z (SIGTSTP to ipcflow) stops the stages with ipcflow; SIGCONT resumes
// them all.
func TestStopAndContinue(t *testing.T) {
	fr, _ := startLong(t)
	defer func() {
		fr.cmd.Process.Signal(syscall.SIGTERM)
		fr.cmd.Wait()
	}()
	states := func() map[byte]int {
		n := map[byte]int{}
		for _, pid := range testkit.MarkedProcs(fr.mark) {
			st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil {
				continue
			}
			i := bytes.LastIndexByte(st, ')')
			n[st[i+2]]++
		}
		return n
	}
	waitFor := func(what string, ok func(map[byte]int) bool) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for !ok(states()) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: process states %v", what, states())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	fr.cmd.Process.Signal(syscall.SIGTSTP)
	// Everything of the run but the guardian stops.
	waitFor("after SIGTSTP", func(n map[byte]int) bool { return n['T'] >= 5 && n['R']+n['S'] <= 1 })
	fr.cmd.Process.Signal(syscall.SIGCONT)
	waitFor("after SIGCONT", func(n map[byte]int) bool { return n['T'] == 0 })
}

// What a stage leaves running in its group is stopped with the flow.
func init() {
	testFlows["leftover"] = func() *parser.Graph {
		b := newGraph()
		b.stage("bg", `sh -c "sleep 100 > /dev/null 2>&1 &"`)
		// This one ignores SIGTERM: SIGKILL after --grace ends it.
		b.stage("bg2", `sh -c "trap '' TERM; sleep 100 > /dev/null 2>&1 &"`)
		b.stage("bad", "sleep 0.3; exit 2")
		return b.g
	}
}

func TestTeardownReachesLeftovers(t *testing.T) {
	fr := newFlowRun(t, "leftover", "--grace=500ms")
	code := fr.run(t)
	if code != 2 {
		t.Errorf("exit status %d, want 2; stderr:\n%s", code, fr.stderr.Bytes())
	}
	testkit.WaitNoProcs(t, fr.mark, 200*time.Millisecond)
}
