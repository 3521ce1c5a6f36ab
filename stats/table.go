package stats

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Title(), status,
			Seconds(s.WallSec), Seconds(s.UserSec), Seconds(s.SysSec), Size(s.MaxRSS),
			Size(s.BytesRead), Size(s.BytesWritten),
			pct(s.Share.Running), pct(s.Share.CPUWait), pct(s.Share.Writing), pct(s.Share.Reading), pct(s.Share.Semaphore), pct(s.Share.Other))
	}
	if len(rep.Edges) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "edge\tfrom -> to\ttype\tbytes\trecords\tthroughput\tpeak fill\tlost")
		for _, e := range rep.Edges {
			fmt.Fprintf(tw, "%s\t%s -> %s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.From, e.To, e.Type,
				edgeBytes(e), records(e), Rate(e.ThroughputBps), fill(e.PeakFill, e.Capacity), lost(e))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if b := rep.Bottleneck; b != nil {
		fmt.Fprintf(w, "bottleneck: %s\n", b)
	} else {
		fmt.Fprintln(w, "bottleneck: none found (no stage's own work took a fifth of the run)")
	}
	_, err := fmt.Fprintf(w, "measured: %d samples every %s, %s of ipcflow's CPU\n",
		rep.Sampler.Samples, Seconds(rep.Sampler.IntervalMs/1000), Seconds(rep.Sampler.CPUSec))
	return err
}

func edgeBytes(e Edge) string {
	switch e.BytesFrom {
	case "":
		return "?"
	case "process io":
		return "~" + Size(e.Bytes)
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
	if e.Type != "socket" || e.Lost == 0 {
		return "-"
	}
	return fmt.Sprint(e.Lost)
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
	case s < 100:
		return fmt.Sprintf("%.2fs", s)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.0fs", s), ".")
}
