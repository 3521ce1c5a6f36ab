package stats

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// LiveLines are the live view of a running flow, one line per row: a
// title, then each stage (what it does now) and each edge (bytes, rate,
// fill). prev, the view before (or nil), gives the rates: bytes moved
// between the two over the time between them.
func LiveLines(rep, prev *Report) []string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\trun %s\tpid %d\t%s\n", rep.Script, rep.Run, rep.Pid, Seconds(rep.WallSec))
	for _, s := range rep.Stages {
		now := s.Doing
		if s.State != "running" {
			now = s.State
			if s.Status != "" {
				now = s.Status
			}
		}
		fmt.Fprintf(tw, "  %s\tpid %d\t%s%s\n", s.Title(), s.Pid, now, s.RestartNote())
		for _, c := range s.Replicas {
			fmt.Fprintf(tw, "    %s\t%s\t%s\n", c.Name, copyPid(c), copyNowText(c))
		}
	}
	for i, e := range rep.Edges {
		rate := 0.0
		if prev != nil && i < len(prev.Edges) && rep.WallSec > prev.WallSec {
			rate = float64(e.Bytes-prev.Edges[i].Bytes) / (rep.WallSec - prev.WallSec)
		} else if rep.WallSec > 0 {
			rate = float64(e.Bytes) / rep.WallSec
		}
		fmt.Fprintf(tw, "  %s %s -> %s\t%s\t%s\t%s\tfill %s\n", e.ID, e.From, e.To, e.Type,
			edgeBytes(e), Rate(rate), edgeFill(e, e.Fill))
	}
	tw.Flush()
	return strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
}

// WriteLive writes the live view once (ipcflow ps RUN).
func WriteLive(w io.Writer, rep, prev *Report) error {
	for _, l := range LiveLines(rep, prev) {
		if _, err := fmt.Fprintln(w, l); err != nil {
			return err
		}
	}
	return nil
}

// copyPid is a copy's process for the live view: none between blocks.
func copyPid(c Copy) string {
	if c.Pid == 0 {
		return "-"
	}
	return fmt.Sprintf("pid %d", c.Pid)
}

// copyNowText is what a copy does now, and how many blocks it has run.
func copyNowText(c Copy) string {
	now := c.Doing
	if c.Pid == 0 && c.Status != "" {
		now = c.Status
	}
	return fmt.Sprintf("%s, %s run%s", now, plural(int64(c.Processes), "process"), c.RestartNote())
}
