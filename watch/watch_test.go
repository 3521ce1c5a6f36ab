package watch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// echoFlow is a flow whose one run writes one line to stdout.
const echoFlow = "stage a = echo run\n"

// sleepFlow writes its line, then lives until it is stopped.
const sleepFlow = "stage a = echo run; sleep 60\n"

func TestWriteInPlace(t *testing.T) {
	s := watchFlow(t, echoFlow, Options{})
	s.waitStderr("ipcflow: watch: run ended: exit status 0\n", 1)
	s.save(echoFlow + "# changed\n")
	s.exactRuns(2)
	s.waitStderr("ipcflow: watch: run ended: exit status 0\n", 2)
}

// TestRenameOver saves as vim does by default: probe with 4913, rename
// the file to a backup, write a new file, remove the backup. It is one
// save and makes one run.
func TestRenameOver(t *testing.T) {
	s := watchFlow(t, echoFlow, Options{})
	s.waitRuns(1)
	probe := filepath.Join(s.dir, "4913")
	os.WriteFile(probe, nil, 0o600)
	os.Remove(probe)
	backup := s.script + "~"
	if err := os.Rename(s.script, backup); err != nil {
		t.Fatal(err)
	}
	s.save(echoFlow + "# saved by rename\n")
	os.Remove(backup)
	s.exactRuns(2)

	// And as sed -i, VS Code and JetBrains do: a temporary file renamed
	// over the script.
	tmp := filepath.Join(s.dir, ".flow.ipcflow.tmp")
	os.WriteFile(tmp, []byte(echoFlow+"# by a temporary file\n"), 0o600)
	if err := os.Rename(tmp, s.script); err != nil {
		t.Fatal(err)
	}
	s.exactRuns(3)
}

func TestDeleteAndRecreate(t *testing.T) {
	s := watchFlow(t, echoFlow, Options{})
	s.waitRuns(1)
	// Within the debounce: one change.
	os.Remove(s.script)
	s.save(echoFlow)
	s.exactRuns(2)
	// Apart: the script is missing for a while (said, and waited out),
	// then back.
	os.Remove(s.script)
	s.waitStderr("flow.ipcflow: no such file or directory", 1)
	s.waitStderr("ipcflow: watch: waiting for a change", 1)
	s.save(echoFlow)
	s.exactRuns(3)
}

// TestTouch: a change of the times alone counts, as in entr: touch is how
// a user asks for a run without editing anything.
func TestTouch(t *testing.T) {
	s := watchFlow(t, echoFlow, Options{})
	s.waitRuns(1)
	now := time.Now()
	if err := os.Chtimes(s.script, now, now); err != nil {
		t.Fatal(err)
	}
	s.exactRuns(2)
}

// TestBurst: 50 saves in a second make one run (two if the machine let
// a gap between two saves grow past the debounce), never 50. The run
// alive when they start is stopped once.
func TestBurst(t *testing.T) {
	const debounce = 100 * time.Millisecond
	s := watchFlow(t, sleepFlow, Options{Debounce: debounce})
	s.waitRuns(1)
	gaps := 0 // pauses between saves longer than the debounce
	last := time.Now()
	for i := range 50 {
		s.save(fmt.Sprintf("%s# save %d\n", sleepFlow, i))
		if now := time.Now(); now.Sub(last) > debounce {
			gaps++
		}
		last = time.Now()
		time.Sleep(20 * time.Millisecond)
	}
	s.waitRuns(2)
	time.Sleep(500 * time.Millisecond)
	if got := s.runs(); got > 2+gaps {
		t.Fatalf("%d runs after 50 saves in a second, want 2 (%d gaps past the debounce)\n%s", got, gaps, s.stderr.String())
	}
	if n := strings.Count(s.stderr.String(), "stopped for a change"); n != s.runs()-1 {
		t.Fatalf("%d runs stopped for a change, want %d\n%s", n, s.runs()-1, s.stderr.String())
	}
	t.Logf("%d runs, %d gaps", s.runs(), gaps)
}

// TestDirectoryTree: --on DIR sees a new file anywhere below DIR, also in
// a directory made after watch started, and ignores version control's
// and editors' files and the runs' own (here the run base is inside DIR,
// and every run writes files there).
func TestDirectoryTree(t *testing.T) {
	tree := t.TempDir()
	for _, d := range []string{"sub", ".git/objects", "runtime"} {
		os.MkdirAll(filepath.Join(tree, d), 0o700)
	}
	// Each run makes a FIFO and its run directory in the tree.
	s := watchFlowIn(t, filepath.Join(tree, "runtime"), "stage a = echo run\nstage b = cat\na -[fifo]-> b\nb -> stdout\n", Options{On: []string{tree}})
	s.exactRuns(1)

	change := func(path string, runs int) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(tree, path), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		s.exactRuns(runs)
	}
	change("new.txt", 2)
	change("sub/new.txt", 3)
	// Made after watch started: its creation is a change, and what is
	// made in it later is seen too.
	if err := os.MkdirAll(filepath.Join(tree, "later/deeper"), 0o700); err != nil {
		t.Fatal(err)
	}
	s.exactRuns(4)
	change("later/deeper/new.txt", 5)

	for _, noise := range []string{".git/objects/ab", ".git/index", "sub/.new.txt.swp", "sub/.new.txt.swx", "new.txt~", "4913", "#new.txt#", ".#new.txt", "later/x___jb_tmp___"} {
		if err := os.WriteFile(filepath.Join(tree, noise), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s.settled(5)
}

// TestBrokenThenFixed: a script that stops checking prints its errors
// and waits; the next good save runs.
func TestBrokenThenFixed(t *testing.T) {
	s := watchFlow(t, echoFlow, Options{})
	s.waitRuns(1)
	s.save(echoFlow + "a -> nowhere\n")
	s.waitStderr("flow.ipcflow:2:6: ", 1)
	s.waitStderr("ipcflow: watch: waiting for a change", 1)
	s.settled(1)
	s.save(echoFlow)
	s.exactRuns(2)
}

// TestSignalStopsRunAndWatch: SIGINT ends the live run and watch with a
// *Stopped; the session's cleanup checks that no process and no object
// of the run is left.
func TestSignalStopsRunAndWatch(t *testing.T) {
	s := watchFlow(t, sleepFlow, Options{})
	s.waitRuns(1)
	err := s.end()
	var stopped *Stopped
	if !errors.As(err, &stopped) || stopped.Signal != syscall.SIGINT {
		t.Fatalf("watch ended with %v, want stopped by SIGINT", err)
	}
	if !strings.Contains(s.stderr.String(), "ipcflow: watch: run ended: stopped by interrupt") {
		t.Fatalf("no line for the stopped run:\n%s", s.stderr.String())
	}
}

// TestRestarts: a flow with shm, mq and fifo edges, restarted by a save
// each time its run is up, leaves nothing behind (the session's cleanup
// checks /dev/shm, /dev/mqueue, the run base and the processes). One run
// at a time is also what lets each run's queue fit in RLIMIT_MSGQUEUE.
func TestRestarts(t *testing.T) {
	const restarts = 100
	const flow = `stage mark = echo run
stage src = seq 1 100000; sleep 60
stage mid = cat
stage mid2 = cat
stage sink = cat >/dev/null
src -[shm]-> mid -[mq]-> mid2 -[fifo]-> sink
`
	s := watchFlow(t, flow, Options{Debounce: 30 * time.Millisecond})
	s.waitRuns(1)
	start := time.Now()
	for i := range restarts {
		s.save(fmt.Sprintf("%s# %d\n", flow, i))
		s.waitRuns(i + 2)
	}
	t.Logf("%d restarts in %v", restarts, time.Since(start).Round(time.Millisecond))
	if n := strings.Count(s.stderr.String(), "stopped for a change"); n != restarts {
		t.Errorf("%d runs stopped for a change, want %d\n%s", n, restarts, s.stderr.String())
	}
}

// TestOnFile: --on FILE is watched through its directory, where only
// FILE counts.
func TestOnFile(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data.txt")
	os.WriteFile(data, []byte("1"), 0o600)
	s := watchFlow(t, echoFlow, Options{On: []string{data}})
	s.exactRuns(1)
	os.WriteFile(filepath.Join(filepath.Dir(data), "other.txt"), []byte("x"), 0o600)
	s.settled(1)
	os.WriteFile(data, []byte("2"), 0o600)
	s.exactRuns(2)
}
