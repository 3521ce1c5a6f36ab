package main

import (
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ipcflow/ipcflow/exec"
	"github.com/ipcflow/ipcflow/rundir"
	"github.com/ipcflow/ipcflow/stats"
)

// PsCmd is `ipcflow ps [RUN]` (SPEC 7, 9): the user's live runs, or one
// run's live view, asked of the run itself on its control socket.
type PsCmd struct {
	ID   string `arg:"" optional:"" name:"run" help:"A live run: its id, a prefix of it, or ipcflow's pid."`
	JSON bool   `name:"json" help:"The run's figures as the --stats-json document (live: true)."`
}

// askTimeout bounds how long ps waits for a run to answer: a run answers
// from a goroutine of its own, even when its stages hang.
const askTimeout = 3 * time.Second

func (c *PsCmd) Run(s *Streams) error {
	var runs []rundir.Run
	for _, r := range rundir.Live() {
		// A directory made a moment ago, its manifest not yet written,
		// is not a run to show yet.
		if r.PID > 0 {
			runs = append(runs, r)
		}
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].PID < runs[j].PID })
	if c.ID == "" {
		if c.JSON {
			return &ExitStatus{Code: usageStatus, Msg: "ps: --json needs a RUN"}
		}
		return listRuns(s, runs)
	}
	run, err := findRun(runs, c.ID)
	if err != nil {
		return &ExitStatus{Code: 1, Msg: "ps: " + err.Error()}
	}
	sock := filepath.Join(run.Dir, exec.ControlSocket)
	rep, err := stats.Ask(sock, askTimeout)
	if err != nil {
		return &ExitStatus{Code: 1, Msg: fmt.Sprintf("ps: run %s (pid %d): %v", run.ID, run.PID, err)}
	}
	if c.JSON {
		return rep.WriteJSON(s.Stdout)
	}
	// A second look a moment later gives the rates.
	time.Sleep(stats.MonitorRate)
	if now, err := stats.Ask(sock, askTimeout); err == nil {
		return stats.WriteLive(s.Stdout, now, rep)
	}
	return stats.WriteLive(s.Stdout, rep, nil)
}

// listRuns prints one line per live run: its id, pid, age, stages
// running, and script.
func listRuns(s *Streams, runs []rundir.Run) error {
	tw := tabwriter.NewWriter(s.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tPID\tAGE\tSTAGES\tSCRIPT")
	for _, r := range runs {
		age, stages, script := "?", "?", "?"
		if rep, err := stats.Ask(filepath.Join(r.Dir, exec.ControlSocket), askTimeout); err == nil {
			age = stats.Seconds(rep.WallSec)
			running := 0
			for _, st := range rep.Stages {
				if st.State == "running" {
					running++
				}
			}
			stages = fmt.Sprintf("%d/%d running", running, len(rep.Stages))
			script = rep.Script
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", r.ID, r.PID, age, stages, script)
	}
	return tw.Flush()
}

// findRun picks the run id names: a run's id or a unique prefix of it,
// or the pid of its ipcflow.
func findRun(runs []rundir.Run, id string) (rundir.Run, error) {
	if pid, err := strconv.Atoi(id); err == nil {
		for _, r := range runs {
			if r.PID == pid {
				return r, nil
			}
		}
	}
	var found []rundir.Run
	for _, r := range runs {
		if strings.HasPrefix(r.ID, id) {
			found = append(found, r)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return rundir.Run{}, fmt.Errorf("no live run %q of this user (ipcflow ps lists them)", id)
	}
	return rundir.Run{}, fmt.Errorf("%q names %d runs: give more of the id", id, len(found))
}
