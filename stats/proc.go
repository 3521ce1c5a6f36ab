package stats

// What the kernel tells about a process without touching its data:
// /proc/PID/stat (state, process group, CPU ticks), /proc/PID/syscall
// (the call it is blocked in, and its fd), /proc/PID/io (bytes it read
// and wrote), and the identity of one of its fds. All of them are read
// with the same permission ptrace's read mode needs: ipcflow's own
// children, or `ipcflow ps` of the same user.

import (
	"bytes"
	"os"
	"strconv"
	"time"
)

// ticksPerSec is USER_HZ, the unit of /proc's CPU times: 100 on every
// Linux architecture (the kernel converts to it for user space).
const ticksPerSec = 100

// procStat is what a stage sampler needs of /proc/PID/stat.
type procStat struct {
	state     byte // R, S, D, T, Z...
	ppid      int
	pgrp      int
	user, sys uint64 // utime + cutime, stime + cstime: its own and its reaped children's
}

// parseStat reads /proc/PID/stat's text. comm may hold spaces and
// parentheses, so fields count from the last ')'.
func parseStat(b []byte) (procStat, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return procStat{}, false
	}
	// state ppid pgrp session tty tpgid flags minflt cminflt majflt
	// cmajflt utime stime cutime cstime ...
	var f [15][]byte
	n := 0
	for rest := b[i+2:]; n < len(f) && len(rest) > 0; n++ {
		j := bytes.IndexByte(rest, ' ')
		if j < 0 {
			f[n], rest = rest, nil
		} else {
			f[n], rest = rest[:j], rest[j+1:]
		}
	}
	if n < 15 || len(f[0]) == 0 {
		return procStat{}, false
	}
	st := procStat{state: f[0][0]}
	st.ppid, _ = strconv.Atoi(string(f[1]))
	st.pgrp, _ = strconv.Atoi(string(f[2]))
	for i, k := range f[11:15] {
		t, _ := strconv.ParseUint(string(k), 10, 64)
		if i%2 == 0 {
			st.user += t
		} else {
			st.sys += t
		}
	}
	return st, true
}

// ReadCPU reads pid's CPU time from /proc/PID/stat, its reaped children's
// included (remote's agent reports a stage's so).
func ReadCPU(pid int) (user, sys time.Duration, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	st, ok := parseStat(b)
	return ticksToDuration(st.user), ticksToDuration(st.sys), ok
}

func ticksToDuration(t uint64) time.Duration { return time.Duration(t) * time.Second / ticksPerSec }

func durationToTicks(d time.Duration) uint64 { return uint64(d * ticksPerSec / time.Second) }

// blocked is what /proc/PID/syscall says a sleeping process waits in.
type blocked struct {
	nr   int64
	args [6]uint64
	ok   bool // false: not in a system call ("running") or unreadable
}

func parseSyscall(b []byte) blocked {
	f := bytes.Fields(b)
	if len(f) < 7 {
		return blocked{}
	}
	nr, err := strconv.ParseInt(string(f[0]), 10, 64)
	if err != nil || nr < 0 {
		return blocked{}
	}
	bl := blocked{nr: nr, ok: true}
	for i := range bl.args {
		bl.args[i], _ = strconv.ParseUint(string(bytes.TrimPrefix(f[i+1], []byte("0x"))), 16, 64)
	}
	return bl
}

// IO is what a process read and wrote through read(2)- and write(2)-like
// calls, its own and its reaped children's (/proc/PID/io rchar, wchar).
type IO struct {
	Read, Written int64
	OK            bool
}

// Plus is a and b together: a restarted stage's copies, one after another.
func (a IO) Plus(b IO) IO {
	if !a.OK || !b.OK {
		if b.OK {
			return b
		}
		return a
	}
	return IO{Read: a.Read + b.Read, Written: a.Written + b.Written, OK: true}
}

// ReadIO reads pid's /proc/PID/io. Read it from a zombie (waitid with
// WNOWAIT) for the final figure: once reaped, it is gone.
func ReadIO(pid int) IO {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io")
	if err != nil {
		return IO{}
	}
	return parseIO(b)
}

func parseIO(b []byte) IO {
	var io IO
	for _, line := range bytes.Split(b, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte(": "))
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(string(v), 10, 64)
		switch string(k) {
		case "rchar":
			io.Read = n
			io.OK = true
		case "wchar":
			io.Written = n
		}
	}
	return io
}

// FileKey names an open file as the kernel does: device and inode.
type FileKey struct{ Dev, Ino uint64 }

// procFile is one /proc file kept open and read again with pread at 0,
// which has the kernel make its text afresh: no open per sample.
type procFile struct {
	f   *os.File
	buf []byte
}

func openProc(pid int, name string) (*procFile, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/" + name)
	if err != nil {
		return nil, err
	}
	return &procFile{f: f, buf: make([]byte, 512)}, nil
}

func (p *procFile) read() ([]byte, bool) {
	n, err := p.f.ReadAt(p.buf, 0)
	if n <= 0 && err != nil {
		return nil, false
	}
	return p.buf[:n], true
}

func (p *procFile) close() { p.f.Close() }
