package stats

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A replicated stage (SPEC 11) is one process to exec, its replica
// runner, whose children are the copies: exec knows the runner's pid and
// status, not the copies'. The runner tells them through a CopyTable:
// a small shared memory file that ipcflow makes, hands to the runner as
// an fd and maps as well. The runner is its one writer; the sampler, ps
// and the final report read it. Each figure is one 64-bit word written
// and read atomically: a reader may see one figure of a copy a moment
// before another, never a torn one. Nothing of it is on the data path:
// the runner writes a slot when it starts and reaps a copy's process.
//
// Copy k is a slot: a long-lived copy (unordered, merge) for the whole
// run; in ordered mode the processes that run in it one after the other
// (a block takes a free slot: never two processes in one).
type CopyTable struct {
	words []int64
	mem   []byte
	n     int
}

// The words of a slot.
const (
	cwPid       = iota // the copy's process now, 0 between processes
	cwProcesses        // processes started (blocks, in ordered mode)
	cwStartNs          // when the current process started (ns since the table's epoch)
	cwBusyNs           // the ended processes' lives, added up
	cwUserNs           // their CPU (wait4's rusage, their children included)
	cwSysNs
	cwMaxRSS  // bytes, the largest of them
	cwRead    // rchar and wchar of /proc/PID/io, read before the reap
	cwWritten //
	cwStatus  // how the copy ended (see status), 0 while it never did
	// A restart policy (SPEC 14) applies per copy: how many times the
	// runner started the copy again, and how its last failed process
	// that was followed by another ended (a status word).
	cwRestarts
	cwFailure
	cwSlot // words per slot
)

// Status words: exited with code c is 1<<16|c, killed by signal s is
// 2<<16|s. The first failure of a copy sticks; else the last end.
const (
	statusExit   = 1 << 16
	statusSignal = 2 << 16
)

// The header: the table's own start (epoch), in ns of CLOCK_MONOTONIC,
// so that both processes read times the same way; and the last failure
// of any copy that was restarted (a status word), the stage's.
const (
	hwEpoch = iota
	hwLastFailure
	tableHeader // words before the first slot
)

// NewCopyTable makes a table for n copies, in a memfd that the runner
// inherits (the file, not close-on-exec: exec hands it on as a stage fd).
func NewCopyTable(n int) (*CopyTable, *os.File, error) {
	fd, err := unix.MemfdCreate("ipcflow-copies", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, nil, fmt.Errorf("copy table: %w", err)
	}
	f := os.NewFile(uintptr(fd), "ipcflow-copies")
	if err := unix.Ftruncate(fd, int64(tableSize(n))); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("copy table: %w", err)
	}
	t, err := mapTable(fd, n)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	atomic.StoreInt64(&t.words[hwEpoch], monotonicNs())
	return t, f, nil
}

// OpenCopyTable maps the table that fd holds, for n copies (the runner).
func OpenCopyTable(fd, n int) (*CopyTable, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("copy table: %w", err)
	}
	if st.Size != int64(tableSize(n)) {
		return nil, fmt.Errorf("copy table: %d bytes, want %d for %d copies", st.Size, tableSize(n), n)
	}
	return mapTable(fd, n)
}

func tableSize(n int) int { return 8 * (tableHeader + n*cwSlot) }

func mapTable(fd, n int) (*CopyTable, error) {
	mem, err := unix.Mmap(fd, 0, tableSize(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("copy table: %w", err)
	}
	words := unsafe.Slice((*int64)(unsafe.Pointer(&mem[0])), len(mem)/8)
	return &CopyTable{words: words, mem: mem, n: n}, nil
}

// Close unmaps the table.
func (t *CopyTable) Close() {
	if t != nil && t.mem != nil {
		unix.Munmap(t.mem)
		t.mem, t.words = nil, nil
	}
}

// Len is the number of copies.
func (t *CopyTable) Len() int { return t.n }

func (t *CopyTable) word(k, w int) *int64 { return &t.words[tableHeader+k*cwSlot+w] }

func (t *CopyTable) get(k, w int) int64 { return atomic.LoadInt64(t.word(k, w)) }

func (t *CopyTable) set(k, w int, v int64) { atomic.StoreInt64(t.word(k, w), v) }

func (t *CopyTable) now() int64 { return monotonicNs() - atomic.LoadInt64(&t.words[hwEpoch]) }

func monotonicNs() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// Began records that copy k's process pid started (the runner).
func (t *CopyTable) Began(k, pid int) {
	if t == nil || k < 0 || k >= t.n {
		return
	}
	t.set(k, cwStartNs, t.now())
	t.set(k, cwProcesses, t.get(k, cwProcesses)+1)
	t.set(k, cwPid, int64(pid))
}

// Ended records how copy k's process ended (the runner): its wait status,
// rusage and I/O (read before it was reaped). restarted: the runner
// starts the copy again (its restart policy), so the status is its last
// failure, not how the copy ended.
func (t *CopyTable) Ended(k int, ws unix.WaitStatus, ru *unix.Rusage, io IO, restarted bool) {
	if t == nil || k < 0 || k >= t.n {
		return
	}
	t.set(k, cwBusyNs, t.get(k, cwBusyNs)+t.now()-t.get(k, cwStartNs))
	t.set(k, cwUserNs, t.get(k, cwUserNs)+ru.Utime.Nano())
	t.set(k, cwSysNs, t.get(k, cwSysNs)+ru.Stime.Nano())
	t.set(k, cwMaxRSS, max(t.get(k, cwMaxRSS), ru.Maxrss*1024))
	if io.OK {
		t.set(k, cwRead, t.get(k, cwRead)+io.Read)
		t.set(k, cwWritten, t.get(k, cwWritten)+io.Written)
	}
	status := statusWord(ws)
	switch old := t.get(k, cwStatus); {
	case restarted:
		t.set(k, cwRestarts, t.get(k, cwRestarts)+1)
		if statusFailed(status) { // as the runner judged it (CopyFailed)
			t.set(k, cwFailure, status)
			atomic.StoreInt64(&t.words[hwLastFailure], status)
		}
	case !statusFailed(old):
		t.set(k, cwStatus, status) // a failure sticks; an ok end is replaced by the next
	}
	t.set(k, cwPid, 0)
}

// CopyFailed says whether a copy's process that ended with ws failed:
// not when it exited 0 or 1 (the exit status 1 rule, docs/replicas.md,
// "Exit status": grep's "nothing selected" in its part), nor when killed
// by SIGPIPE (its reader left). The replica runner restarts a copy on it
// and the table records its failures by it: one test for both.
func CopyFailed(ws unix.WaitStatus) bool { return statusFailed(statusWord(ws)) }

// statusWord is ws as a status word (0 if it neither exited nor was
// killed).
func statusWord(ws unix.WaitStatus) int64 {
	switch {
	case ws.Signaled():
		return statusSignal | int64(ws.Signal())
	case ws.Exited():
		return statusExit | int64(ws.ExitStatus())
	}
	return 0
}

// statusFailed says whether status word s is a failure (CopyFailed); 0,
// no end yet, is none.
func statusFailed(s int64) bool {
	switch s {
	case 0, statusExit, statusExit | 1, statusSignal | int64(unix.SIGPIPE):
		return false
	}
	return true
}

// Restarts are the restarts of every copy, and the last failure of one
// that was restarted, in SPEC 6's words ("" if none).
func (t *CopyTable) Restarts() (n int, lastFailure string) {
	if t == nil || t.words == nil {
		return 0, ""
	}
	for k := range t.n {
		n += int(t.get(k, cwRestarts))
	}
	return n, statusText(atomic.LoadInt64(&t.words[hwLastFailure]))
}

// copyNow is copy k as the table says now.
type copyNow struct {
	pid, processes        int
	busy, user, sys       time.Duration
	maxRSS, read, written int64
	status                int64
	liveSince             time.Duration // the current process's start, 0 if none
	restarts              int
	failure               int64
}

func (t *CopyTable) copy(k int) copyNow {
	c := copyNow{
		pid:       int(t.get(k, cwPid)),
		processes: int(t.get(k, cwProcesses)),
		busy:      time.Duration(t.get(k, cwBusyNs)),
		user:      time.Duration(t.get(k, cwUserNs)),
		sys:       time.Duration(t.get(k, cwSysNs)),
		maxRSS:    t.get(k, cwMaxRSS),
		read:      t.get(k, cwRead),
		written:   t.get(k, cwWritten),
		status:    t.get(k, cwStatus),
		restarts:  int(t.get(k, cwRestarts)),
		failure:   t.get(k, cwFailure),
	}
	if c.pid != 0 {
		c.busy += time.Duration(t.now() - t.get(k, cwStartNs))
	}
	return c
}

// statusText is a copy's status in SPEC 6's words.
func statusText(s int64) string {
	switch {
	case s == 0:
		return ""
	case s&statusSignal != 0 && unix.Signal(s&0xffff) == unix.SIGPIPE:
		return "broken pipe (killed by signal SIGPIPE)"
	case s&statusSignal != 0:
		return "killed by signal " + unix.SignalName(unix.Signal(s&0xffff))
	}
	return fmt.Sprintf("exit status %d", s&0xffff)
}
