package stats_test

// A replicated stage's copies one by one (SPEC 9, 11): what the replica
// runner tells through its copy table, against what is known of the
// copies by construction.

import (
	"bytes"
	"encoding/json"
	"fmt"
	osexec "os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/ipcflow/ipcflow/internal/testkit"
	"github.com/ipcflow/ipcflow/stats"
)

// Copies of cat read and write the input once between them, in every
// mode: their bytes add up to its size, each has a name, a status and
// the memory it used, and the table shows a row for each.
func TestCopiesAddUpToTheInput(t *testing.T) {
	in := lines63(40000) // 2,520,000 bytes
	file := testkit.WriteTemp(t, "in", in)
	t.Setenv("IPCFLOW_REPLICA_BLOCK", "256KiB") // several blocks per copy
	for _, mode := range []string{"", " unordered", " merge 'cat'"} {
		t.Run(strings.Fields(mode + " ordered")[0], func(t *testing.T) {
			r := runFlow(t, "stage src = cat "+file+"\nstage c[3]"+mode+" = cat\nstage sink = wc -c\nsrc -> c -> sink\n")
			if r.code != 0 || strings.TrimSpace(string(r.stdout)) != fmt.Sprint(len(in)) {
				t.Fatalf("exit %d, printed %q, want 0 and %d\n%s", r.code, r.stdout, len(in), r.stderr)
			}
			validate(t, r.raw)
			c := r.stage(t, "c")
			if c.Copies != 3 || len(c.Replicas) != 3 {
				t.Fatalf("copies %d, %d rows; want 3 and 3\n%s", c.Copies, len(c.Replicas), r.raw)
			}
			var read, written int64
			processes := 0
			for k, cp := range c.Replicas {
				if cp.Name != fmt.Sprintf("c[%d]", k) || cp.Status != "exit status 0" || cp.Pid != 0 || cp.Processes < 1 {
					t.Errorf("copy %d: %+v", k, cp)
				}
				if cp.MaxRSS <= 0 || cp.BusySec <= 0 || cp.UserSec+cp.SysSec > c.UserSec+c.SysSec+0.01 {
					t.Errorf("copy %d: rss %d busy %v cpu %v (the stage's %v)", k, cp.MaxRSS, cp.BusySec, cp.UserSec+cp.SysSec, c.UserSec+c.SysSec)
				}
				read += cp.BytesRead
				written += cp.BytesWritten
				processes += cp.Processes
			}
			// rchar counts what the dynamic loader reads of libraries
			// too: a few KiB per process, the same for each.
			if read < int64(len(in)) || read > int64(len(in)+processes*(64<<10)) || (read-int64(len(in)))%int64(processes) != 0 {
				t.Errorf("the copies read %d bytes in %d processes, want %d and the same little for each", read, processes, len(in))
			}
			if written != int64(len(in)) {
				t.Errorf("the copies wrote %d bytes, want %d", written, len(in))
			}
			if want := 3; mode == "" && processes < len(in)/(256<<10) || mode != "" && processes != want {
				t.Errorf("%d processes ran, want %s", processes, map[bool]string{true: "a block each", false: "3"}[mode == ""])
			}
		})
	}
	bin := testkit.BuildIpcflow(t)
	script := testkit.WriteTemp(t, "f.ipcflow", []byte("stage src = cat "+file+"\nstage c[2] = cat\nstage sink = wc -c\nsrc -> c -> sink\n"))
	var stderr bytes.Buffer
	cmd := osexec.Command(bin, "run", "--stats", script)
	cmd.Stdout, cmd.Stderr = &bytes.Buffer{}, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\n%s", err, stderr.Bytes())
	}
	for _, re := range []string{`(?m)^c ×2 +exit status 0 `, `(?m)^  c\[0\] +exit status 0 \([0-9]+ blocks\) `, `(?m)^  c\[1\] +exit status 0 `} {
		if !regexp.MustCompile(re).Match(stderr.Bytes()) {
			t.Errorf("the table lacks %s:\n%s", re, stderr.Bytes())
		}
	}
}

// The copy whose block holds the poisoned line is the one that failed.
func TestFailedCopyIsNamed(t *testing.T) {
	in := lines63(40000)
	file := testkit.WriteTemp(t, "in", in)
	t.Setenv("IPCFLOW_REPLICA_BLOCK", "256KiB")
	// Line 30000 is in one block of some ten: one copy alone fails.
	r := runFlow(t, "stage src = cat "+file+"\nstage c[3] = awk '/^00030000 / { exit 5 } { print }'\nstage sink = wc -c\nsrc -> c -> sink\n")
	if r.code != 5 {
		t.Fatalf("exit %d, want 5\n%s", r.code, r.stderr)
	}
	failed := 0
	for _, cp := range r.stage(t, "c").Replicas {
		if cp.Status == "exit status 5" {
			failed++
		} else if cp.Status != "exit status 0" && !strings.HasPrefix(cp.Status, "killed by signal SIGTERM") {
			t.Errorf("copy %s: status %q", cp.Name, cp.Status)
		}
	}
	if failed != 1 {
		t.Errorf("%d copies say exit status 5, want 1\n%s", failed, r.raw)
	}
	if !bytes.Contains(r.stderr, []byte("copy c[")) {
		t.Errorf("stderr does not name the copy:\n%s", r.stderr)
	}
}

// ipcflow ps shows each copy of a running replicated stage, what it does
// and its process.
func TestPsShowsTheCopies(t *testing.T) {
	r := startLiveRun(t, "copies.ipcflow", "stage a = seq 1 10\nstage w[2] unordered = sh -c 'cat; exec sleep 1000'\na -> w\n")
	pid := r.pid
	view := r.await("both copies asleep", func(out string) bool { return strings.Count(out, "(sleeping)") >= 2 })
	for _, re := range []string{
		`(?m)^  w ×2 +pid [0-9]+ +`,
		`(?m)^    w\[0\] +pid [0-9]+ +elsewhere \(sleeping\), 1 process run$`,
		`(?m)^    w\[1\] +pid [0-9]+ +elsewhere \(sleeping\), 1 process run$`,
	} {
		if !regexp.MustCompile(re).MatchString(view) {
			t.Errorf("ps %s lacks %s:\n%s", pid, re, view)
		}
	}
	js, _ := r.ps("--json", pid)
	var rep stats.Report
	if err := json.Unmarshal([]byte(js), &rep); err != nil || len(rep.Stages) != 2 || len(rep.Stages[1].Replicas) != 2 || rep.Stages[1].Replicas[0].Pid == 0 {
		t.Errorf("ps --json: %v\n%s", err, js)
	}
	validate(t, []byte(js))
	r.flow.Process.Signal(syscall.SIGTERM)
	if err := r.flow.Wait(); err == nil {
		t.Errorf("the flow exited 0 after SIGTERM\n%s", r.stderr.Bytes())
	}
	r.check()
}

// A copy's restarts (the runner's restart policy, per copy) show in the
// table's status column and in the live view: its blocks are its
// processes less its restarts, and a copy between a failed process and
// the next is restarting.
func TestCopyRestartsShown(t *testing.T) {
	rep := &stats.Report{Stages: []stats.Stage{{Name: "g", Copies: 2, State: "running", Status: "", Restarts: 3, LastFailure: "exit status 5",
		Replicas: []stats.Copy{
			{Name: "g[0]", Processes: 7, Status: "exit status 0", Restarts: 2, LastFailure: "exit status 5"},
			{Name: "g[1]", Processes: 1, Restarts: 1, LastFailure: "exit status 5", Doing: "restarting"},
		}}}}
	var b bytes.Buffer
	if err := stats.WriteTable(&b, rep); err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{`(?m)^g ×2 +running; restarted 3 times, last failure exit status 5 `,
		`(?m)^  g\[0\] +exit status 0 \(5 blocks\); restarted 2 times, last failure exit status 5 `} {
		if !regexp.MustCompile(re).Match(b.Bytes()) {
			t.Errorf("the table lacks %s:\n%s", re, b.Bytes())
		}
	}
	live := strings.Join(stats.LiveLines(rep, nil), "\n")
	if !strings.Contains(live, "g[1]") || !regexp.MustCompile(`g\[1\] +- +restarting, 1 process run; restarted once, last failure exit status 5`).MatchString(live) {
		t.Errorf("the live view does not show g[1] restarting:\n%s", live)
	}
}

// The copy tables are closed by the Recorder, under its lock: a ps
// request answered after the last report (Snapshot) meanwhile reads a
// table whole or not at all (exec unmapped them beside the Recorder,
// which -race reported against such a Snapshot). Reports after it have
// no rows per copy.
func TestCloseCopiesBesideSnapshot(t *testing.T) {
	rec := stats.New(stats.Options{}, []stats.StageSpec{{Name: "g", Copies: 2}}, nil)
	table, file, err := stats.NewCopyTable(2)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	rec.SetCopies(0, table)
	if rep := rec.Snapshot(false); len(rep.Stages[0].Replicas) != 2 {
		t.Fatalf("copies %+v, want 2 rows", rep.Stages[0].Replicas)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			rec.Snapshot(false)
		}
	}()
	rec.CloseCopies()
	<-done
	if rep := rec.Snapshot(false); len(rep.Stages[0].Replicas) != 0 {
		t.Errorf("copies %+v after CloseCopies, want none", rep.Stages[0].Replicas)
	}
}
