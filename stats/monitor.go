package stats

import (
	"bytes"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"golang.org/x/term"
)

// The --monitor view lives in the last rows of the terminal, below a
// scroll region that holds everything else (as apt's progress line does):
// the stages write to the same terminal (their stdout and stderr are its
// own fds, and no byte of them passes through ipcflow), and that text
// scrolls above the view instead of being overwritten by it. Progress
// libraries (mpb, bubbletea's inline mode) redraw a block in place by
// moving the cursor up over what they drew last, which erases whatever
// a stage printed meanwhile: fine for a program that owns its output,
// wrong for ipcflow's.
//
// Each frame is one write(2): save the cursor, draw the view's rows,
// restore the cursor. The terminal driver does not interleave another
// writer's bytes into one write of this size, so a stage's output lands
// where its cursor was. No input is read and no terminal mode changes:
// ^C, ^Z and a stage reading the terminal work as without the view.

// MonitorRate is how often the view is redrawn.
const MonitorRate = 250 * time.Millisecond

// Monitor is the live view of a running flow.
type Monitor struct {
	t          *os.File
	stop, done chan struct{}
	mu         sync.Mutex // draw, Pause, Resume, Stop
	paused     bool
	rows       int // the terminal's height when the region was set, 0 when not set
	n          int // rows the view takes
}

// StartMonitor draws rec's live view at the bottom of terminal t until
// Stop.
func StartMonitor(t *os.File, rec *Recorder) *Monitor {
	m := &Monitor{t: t, stop: make(chan struct{}), done: make(chan struct{})}
	rep := rec.Snapshot(false)
	m.draw(LiveLines(rep, nil))
	go m.update(rec, rep)
	return m
}

// update redraws the view from a fresh look at rec, at MonitorRate.
func (m *Monitor) update(rec *Recorder, prev *Report) {
	defer close(m.done)
	t := time.NewTicker(MonitorRate)
	defer t.Stop()
	// A resize resets the terminal's scroll region: until the view sets
	// it again, the stages' lines run down into the old frame. So a
	// resize redraws at once, not at the next tick.
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, unix.SIGWINCH)
	defer signal.Stop(winch)
	for {
		select {
		case <-m.stop:
			return
		case <-winch:
			m.draw(LiveLines(prev, nil))
		case <-t.C:
			rep := rec.Snapshot(false)
			m.draw(LiveLines(rep, prev))
			prev = rep
		}
	}
}

const (
	saveCursor    = "\x1b7"
	restoreCursor = "\x1b8"
	clearLine     = "\x1b[2K"
	resetRegion   = "\x1b[r"
)

func moveTo(b *bytes.Buffer, row int) {
	b.WriteString("\x1b[")
	b.WriteString(strconv.Itoa(row))
	b.WriteString(";1H")
}

// draw writes one frame. When the terminal's size changed (or on the
// first frame) the scroll region is set again first.
func (m *Monitor) draw(lines []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.paused {
		return
	}
	cols, rows, err := term.GetSize(int(m.t.Fd()))
	if err != nil || rows < 4 || cols < 10 {
		return
	}
	n := min(len(lines), rows/2)
	if n < len(lines) {
		// Too many for half the terminal: say how many are not shown.
		lines = append(lines[:n-1:n-1], fmt.Sprintf("  ... %d more rows (ipcflow ps %d shows all)", len(lines)-n+1, os.Getpid()))
	}
	var b bytes.Buffer
	if rows != m.rows || n != m.n {
		m.reserve(&b, rows, n)
	}
	b.WriteString(saveCursor)
	for i := 0; i < n; i++ {
		moveTo(&b, rows-n+1+i)
		b.WriteString(clearLine)
		line := lines[i]
		if len(line) > cols-1 {
			line = line[:cols-1]
		}
		b.WriteString(line)
	}
	b.WriteString(restoreCursor)
	m.t.Write(b.Bytes())
}

// reserve makes the last n rows the view's: n newlines scroll the text
// above out of their way (the cursor moves back up after them), then the
// scroll region is set to the rows above (which moves the cursor home, so
// it is saved around it).
// After a resize the old rows are not cleared by their numbers: the
// terminal has moved its lines (and reset the region), and rows counted
// from the old bottom may now hold the stages' output. What is below the
// cursor is the old frame's remains (the stages write at the cursor, which
// a frame puts back where it was), so that is erased instead: left there,
// the stages' next lines were written over the frame's and kept its tail.
func (m *Monitor) reserve(b *bytes.Buffer, rows, n int) {
	switch {
	case m.rows != 0 && m.rows == rows:
		m.clear(b)
	case m.rows != 0:
		b.WriteString("\x1b[J") // erase from the cursor to the end of the screen
	}
	for i := 0; i < n; i++ {
		b.WriteByte('\n')
	}
	if n > 0 {
		b.WriteString("\x1b[" + strconv.Itoa(n) + "A")
	}
	b.WriteString(saveCursor)
	b.WriteString("\x1b[1;" + strconv.Itoa(rows-n) + "r")
	b.WriteString(restoreCursor)
	m.rows, m.n = rows, n
}

// clear blanks the view's rows and gives the whole terminal back.
func (m *Monitor) clear(b *bytes.Buffer) {
	b.WriteString(saveCursor)
	for i := 0; i < m.n; i++ {
		moveTo(b, m.rows-m.n+1+i)
		b.WriteString(clearLine)
	}
	b.WriteString(resetRegion)
	b.WriteString(restoreCursor)
	m.rows, m.n = 0, 0
}

// Stop removes the view and leaves the terminal as it was, the cursor
// after the flow's last output. Safe on a nil Monitor.
func (m *Monitor) Stop() {
	if m == nil {
		return
	}
	close(m.stop)
	<-m.done
	m.Pause()
}

// Pause takes the view off the terminal (^Z: the shell gets it back
// whole) until Resume. Safe on a nil Monitor.
func (m *Monitor) Pause() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.paused = true
	if m.rows != 0 {
		var b bytes.Buffer
		m.clear(&b)
		m.t.Write(b.Bytes())
	}
}

// Resume draws the view again from the next frame on (fg, bg).
func (m *Monitor) Resume() {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.paused = false
	m.mu.Unlock()
}
