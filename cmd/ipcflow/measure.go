package main

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/ipcflow/ipcflow/stats"
)

// measuring is what run's --stats, --stats-json and --monitor ask for:
// where the figures go at the end, and the live view while it runs.
type measuring struct {
	table   io.Writer // --stats (and --monitor): the table, on stderr
	json    io.Writer // --stats-json
	file    *os.File  // --stats-json FILE, opened before the run so a bad path fails first
	made    bool      // ... and made by this run: removed if the run never reports
	live    *os.File  // --monitor: the terminal it draws on
	stderr  io.Writer
	monitor *stats.Monitor
	failed  bool // the figures could not be written
}

func (m *measuring) suspend() { m.monitor.Pause() }
func (m *measuring) resume()  { m.monitor.Resume() }

func (c *RunCmd) measuring(s *Streams) (*measuring, error) {
	m := &measuring{stderr: s.Stderr}
	if c.Stats || c.Monitor {
		m.table = s.Stderr
	}
	if c.Monitor {
		if f, ok := s.Stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			m.live = f
		}
	}
	switch c.StatsJSON {
	case "":
	case "-":
		m.json = s.Stdout
	default:
		// Not truncated yet: a run that fails before it starts leaves
		// an earlier document as it was, and removes one it made.
		_, err := os.Stat(c.StatsJSON)
		m.made = os.IsNotExist(err)
		f, err := os.OpenFile(c.StatsJSON, os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			return nil, &ExitStatus{Code: usageStatus, Msg: fmt.Sprintf("run: --stats-json: %v", err)}
		}
		m.file, m.json = f, f
	}
	return m, nil
}

func (m *measuring) on() bool { return m.table != nil || m.json != nil }

// started begins the live view, if asked for.
func (m *measuring) started(rec *stats.Recorder) {
	if m.live != nil {
		m.monitor = stats.StartMonitor(m.live, rec)
	}
}

// report ends the live view and writes the final figures.
func (m *measuring) report(rep *stats.Report) {
	m.monitor.Stop()
	if m.table != nil {
		stats.WriteTable(m.table, rep)
	}
	if m.file != nil {
		m.file.Truncate(0)
	}
	if m.json != nil {
		if err := rep.WriteJSON(m.json); err != nil {
			fmt.Fprintf(m.stderr, "ipcflow: --stats-json: %v\n", err)
			m.failed = true
		}
	}
	if m.file != nil {
		if err := m.file.Close(); err != nil {
			fmt.Fprintf(m.stderr, "ipcflow: --stats-json: %v\n", err)
			m.failed = true
		}
		m.file = nil
	}
}

// abandon is for a run that ended before it started (a setup error):
// no figures, so no document; one this run made goes again.
func (m *measuring) abandon(path string) {
	if m.file == nil {
		return
	}
	m.file.Close()
	if m.made {
		os.Remove(path)
	}
}
