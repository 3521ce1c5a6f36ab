package remote

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/stats"
)

// Figures are what a remote stage's process used on its host, which the
// local /proc cannot see: what it read and wrote (its /proc io: read(2),
// write(2) and their kin, its reaped children's included), its CPU and,
// once it ended, its peak memory. The agent sends them on the control
// session ("fig ..." lines, each second and at the end), and the
// stand-in keeps the last in a file of the run directory for exec's
// measurements (--stats, ps) to read in place of its own.
type Figures struct {
	Read, Written int64
	UserUs, SysUs int64 // CPU, microseconds
	MaxRSSKiB     int64 // 0 until the stage ended
}

// FiguresPath is where the stand-in of stage keeps its figures, in the
// run directory runDir (removed with it).
func FiguresPath(runDir, stage string) string {
	return filepath.Join(runDir, "remote-"+hostKey(stage)+".fig")
}

func (f Figures) line() string {
	return fmt.Sprintf("fig %d %d %d %d %d", f.Read, f.Written, f.UserUs, f.SysUs, f.MaxRSSKiB)
}

func parseFigures(s string) (Figures, bool) {
	var v [5]int64
	fields := strings.Fields(s)
	if len(fields) != len(v) {
		return Figures{}, false
	}
	for i, w := range fields {
		n, err := strconv.ParseInt(w, 10, 64)
		if err != nil {
			return Figures{}, false
		}
		v[i] = n
	}
	return Figures{v[0], v[1], v[2], v[3], v[4]}, true
}

// ReadFigures reads the figures the stand-in kept at path; ok is false
// before the first came.
func ReadFigures(path string) (f Figures, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Figures{}, false
	}
	return parseFigures(string(b))
}

// keep writes f to path whole: a reader sees the old figures or the new.
func (f Figures) keep(path string) {
	tmp := path + ".new"
	if os.WriteFile(tmp, []byte(strings.TrimPrefix(f.line(), "fig ")), 0o600) == nil {
		os.Rename(tmp, path)
	}
}

// liveFigures reads a running process's figures from this host's /proc:
// its io, and its CPU with its reaped children's.
func liveFigures(pid int) (f Figures, ok bool) {
	io := stats.ReadIO(pid)
	if !io.OK {
		return f, false
	}
	f.Read, f.Written = io.Read, io.Written
	if user, sys, ok := stats.ReadCPU(pid); ok {
		f.UserUs, f.SysUs = user.Microseconds(), sys.Microseconds()
	}
	return f, true
}

// endFigures are an ended process's figures: io read before it was
// reaped (io), CPU and peak memory from its reaping (ru).
func endFigures(io Figures, ru *unix.Rusage) Figures {
	io.UserUs = ru.Utime.Sec*1e6 + ru.Utime.Usec
	io.SysUs = ru.Stime.Sec*1e6 + ru.Stime.Usec
	io.MaxRSSKiB = ru.Maxrss
	return io
}
