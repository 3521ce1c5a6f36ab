package stats

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// WriteTable writes rep as the --stats table: stages, edges, the
// bottleneck, and what measuring cost.
func WriteTable(w io.Writer, rep *Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "stage\tstatus\twall\tuser\tsys\tmax rss\tread\twritten\ton cpu\tcpu wait\twriting\treading\tsemaphore\telsewhere")
	for _, s := range rep.Stages {
		status := s.Status
		if status == "" {
			status = s.State
		}
		status += s.RestartNote()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Title(), status,
			Seconds(s.WallSec), Seconds(s.UserSec), Seconds(s.SysSec), Size(s.MaxRSS),
			Size(s.BytesRead), Size(s.BytesWritten),
			pct(s.Share.Running), pct(s.Share.CPUWait), pct(s.Share.Writing), pct(s.Share.Reading), pct(s.Share.Semaphore), pct(s.Share.Other))
		// Its copies, each over its own busy time (the wall column).
		for _, c := range s.Replicas {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t-\t%s\n", c.Name, copyStatus(c),
				Seconds(c.BusySec), Seconds(c.UserSec), Seconds(c.SysSec), Size(c.MaxRSS),
				Size(c.BytesRead), Size(c.BytesWritten),
				pct(c.Share.Running), pct(c.Share.CPUWait), pct(c.Share.Writing), pct(c.Share.Reading), pct(c.Share.Other))
		}
	}
	if len(rep.Edges) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "edge\tfrom -> to\ttype\tbytes\trecords\tthroughput\tpeak fill\tlost")
		for _, e := range rep.Edges {
			fmt.Fprintf(tw, "%s\t%s -> %s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.From, e.To, e.Type,
				edgeBytes(e), records(e), Rate(e.ThroughputBps), edgeFill(e, e.PeakFill), lost(e))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if b := rep.Bottleneck; b != nil {
		fmt.Fprintf(w, "bottleneck: %s\n", b)
	} else {
		fmt.Fprintf(w, "bottleneck: none named: %s\n", rep.NoBottleneck)
	}
	_, err := fmt.Fprintf(w, "measured: %s, %s of ipcflow's CPU\n", samples(rep.Sampler), Seconds(rep.Sampler.CPUSec))
	return err
}

// samples says how the run was sampled: every 20 ms for its first 200 ms,
// then at the interval.
func samples(s Sampler) string {
	if s.Samples < 2 {
		return plural(s.Samples, "sample")
	}
	return fmt.Sprintf("%d samples (every %s, every %s in the first %s)", s.Samples,
		Seconds(s.IntervalMs/1000), Seconds(StartInterval.Seconds()/10), Seconds(StartInterval.Seconds()))
}

func edgeBytes(e Edge) string {
	switch e.BytesFrom {
	case "":
		return "?"
	case "writer io":
		return "≤" + Size(e.Bytes)
	}
	return Size(e.Bytes)
}

func records(e Edge) string {
	if e.Records == nil {
		return "-"
	}
	return fmt.Sprint(*e.Records)
}

func lost(e Edge) string {
	if e.Type != "socket udp" {
		return "-"
	}
	return fmt.Sprint(e.Lost)
}

// edgeFill is an edge's fill (or peak) for the table and the live view:
// bytes of its size where the object tells, "full" or "not full" where
// its ends do.
func edgeFill(e Edge, v int64) string {
	if e.FillFrom == "ends" {
		if e.Capacity > 0 && v >= e.Capacity {
			return "full"
		}
		return "not full"
	}
	return fill(v, e.Capacity)
}

func fill(peak, capacity int64) string {
	if capacity <= 0 {
		if peak == 0 {
			return "-"
		}
		return Size(peak)
	}
	return fmt.Sprintf("%s/%s", Size(peak), Size(capacity))
}

// Size is n bytes in binary units: 0B, 512B, 64.0KiB, 1.5GiB.
func Size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	f, u := float64(n), 0
	for f >= unit && u < 5 {
		f /= unit
		u++
	}
	return fmt.Sprintf("%.1f%ciB", f, "KMGTPE"[u-1])
}

// Rate is a throughput in bytes per second.
func Rate(bps float64) string {
	if bps <= 0 {
		return "-"
	}
	return Size(int64(bps)) + "/s"
}

// Seconds is a duration given in seconds, to a sensible precision.
func Seconds(s float64) string {
	switch {
	case s == 0:
		return "0s"
	case s < 0.001:
		return fmt.Sprintf("%.0fµs", s*1e6)
	case s < 1:
		return fmt.Sprintf("%.1fms", s*1e3)
	case s < 60:
		return fmt.Sprintf("%.2fs", s)
	}
	return (time.Duration(s) * time.Second).String()
}

// copyStatus is a copy's status, with the blocks it ran in ordered mode
// (several processes, less those that ran a block again after a
// failure), and its restarts.
func copyStatus(c Copy) string {
	st := c.Status
	if st == "" {
		st = "running"
		if c.Pid == 0 {
			st = "idle"
		}
	}
	if blocks := c.Processes - c.Restarts; blocks > 1 {
		st += fmt.Sprintf(" (%d blocks)", blocks)
	}
	return st + c.RestartNote()
}
