package stats

// One sample: which processes belong to which running stage, what each
// does (on a CPU, blocked writing or reading which edge, elsewhere), and
// how full the edges are. Everything comes from /proc and from fds the
// stages hold; nothing here reads or writes an edge's data.

import (
	"bytes"
	"io"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// scanEvery is how often, without a cgroup to list them, /proc is read
// whole to find the processes a stage started (a shell's children).
const scanEvery = 500 * time.Millisecond

// ioEvery is how many samples go by between two reads of a stage's
// /proc/PID/io (for a pipe edge's bytes while it runs): the kernel's
// dearest file to make, and only a live view needs it.
const ioEvery = 8

// fillEvery is how many samples go by between two looks at the rings'
// and queues' fill.
const fillEvery = 2

// activity is what one process, then one stage, was doing at a sample.
type activity struct {
	kind  byte // 'R' running, 'W' writing, 'r' reading, 'o' elsewhere, 'c' waiting for a child
	edges []int
	call  string // elsewhere: the system call it waits in, in words
}

// rank orders what a stage with several processes is shown doing: a
// process on a CPU means the stage works; else one that waits to write
// means the stage waits for its downstream; and so on.
func (a activity) rank() int {
	switch a.kind {
	case 'R':
		return 3
	case 'W':
		return 2
	case 'r':
		return 1
	case 'o':
		return 0
	}
	return -1 // a shell waiting for its child: what the child does tells more
}

// sample takes one sample; full also reads what is dear to read (each
// stage's I/O so far, the edges' fill) rather than every few samples.
// r.mu is held.
func (r *Recorder) sample(now time.Time, full bool) {
	if r.stopped {
		return
	}
	r.samples++
	pids := r.processes(now)
	acts := make([]activity, len(r.stages))
	seen := make([]bool, len(r.stages))
	user := make([]uint64, len(r.stages))
	sys := make([]uint64, len(r.stages))
	cs := r.copiesNow()
	for _, pid := range pids {
		p := r.procs[pid]
		if p == nil {
			var err error
			p = &procRec{}
			if p.stat, err = openProc(pid, "stat"); err != nil {
				continue
			}
			r.procs[pid] = p
		}
		b, ok := p.stat.read()
		st, ok2 := parseStat(b)
		if !ok || !ok2 || st.state == 'Z' || st.state == 'X' {
			p.close()
			delete(r.procs, pid)
			continue
		}
		i, ok := r.byPgrp[st.pgrp]
		if !ok {
			continue
		}
		wait := p.runQueueTime(pid)
		r.stages[i].cpuWait += wait
		user[i] += st.user
		sys[i] += st.sys
		a := activityOf(pid, p, st, r.stages[i].ends)
		cs.saw(i, pid, st.ppid, a, wait, st.user, st.sys)
		if !seen[i] || a.rank() > acts[i].rank() {
			acts[i] = a
		}
		seen[i] = true
		if pid == r.stages[i].pid && r.stages[i].elsewhere == nil && (full || r.samples%ioEvery == 1) {
			r.readLiveIO(p, pid, i)
		}
	}
	cs.count(r.stages)
	for i, s := range r.stages {
		if s.state != "running" {
			continue
		}
		if s.elsewhere != nil {
			// Its CPU is the host's figure, not the stand-in's.
			if full || r.samples%ioEvery == 1 {
				if io, u, sy, ok := s.elsewhere(); ok {
					r.setLiveIO(i, io)
					s.elseUser, s.elseSys = durationToTicks(u), durationToTicks(sy)
				}
			}
			user[i], sys[i] = s.elseUser, s.elseSys
		}
		if seen[i] {
			s.liveUser, s.liveSys = user[i], sys[i]
		}
		s.n++
		a := acts[i]
		switch a.kind {
		case 'R':
			s.nRun++
			s.doing = "running"
		case 'W':
			s.nWrite++
			s.doing = "writing " + r.edgeNames(a.edges)
		case 'r':
			s.nRead++
			s.doing = "reading " + r.edgeNames(a.edges)
		default:
			s.nOw++
			s.doing = "elsewhere"
			if a.call != "" {
				s.doing += " (" + a.call + ")"
			}
		}
		for ei, e := range r.edges {
			if e.spec.Producer == i {
				e.writerN++
				if a.kind == 'W' && has(a.edges, ei) {
					e.full++
					e.sawFull()
				}
			}
			if e.spec.Consumer == i {
				e.readerN++
				if a.kind == 'r' && has(a.edges, ei) {
					e.empty++
					e.sawEmpty()
				}
			}
		}
	}
	if full || r.samples%fillEvery == 1 {
		r.sampleFill()
	}
}

func has(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func (r *Recorder) edgeNames(edges []int) string {
	if len(edges) == 0 {
		return "(not an edge)"
	}
	var b []byte
	for k, e := range edges {
		if k > 0 {
			b = append(b, '+')
		}
		b = append(b, r.edges[e].spec.ID...)
	}
	return string(b)
}

// activityOf says what process pid of stage st does: running, or blocked
// writing or reading a pipe, fifo, socket or terminal (the edges it
// belongs to, if any), or elsewhere (sleeping, a file on disk, waiting
// for a child).
func activityOf(pid int, p *procRec, st procStat, ends []End) activity {
	if st.state == 'R' {
		return activity{kind: 'R'}
	}
	if p.sys == nil {
		var err error
		if p.sys, err = openProc(pid, "syscall"); err != nil {
			return activity{kind: 'o'}
		}
	}
	b, ok := p.sys.read()
	if !ok {
		return activity{kind: 'o'}
	}
	if bytes.HasPrefix(b, []byte("running")) {
		return activity{kind: 'R'}
	}
	bl := parseSyscall(b)
	if !bl.ok {
		return activity{kind: 'o'}
	}
	switch callKinds[bl.nr] {
	case callRead:
		return onFd(pid, bl.args[0], 'r', ends)
	case callWrite:
		return onFd(pid, bl.args[0], 'W', ends)
	case callSplice: // splice(in, off, out, ...): a full out blocks it first
		if a := onFd(pid, bl.args[2], 'W', ends); a.kind == 'W' {
			return a
		}
		return onFd(pid, bl.args[0], 'r', ends)
	case callSendfile: // sendfile(out, in, ...)
		return onFd(pid, bl.args[0], 'W', ends)
	case callWait:
		return activity{kind: 'c', call: "waiting for a child"}
	case callFutex:
		// A threaded runtime idles here (the stage shell, a Go or
		// Java program): what its other process does tells more.
		return activity{kind: 'c', call: "futex"}
	}
	return activity{kind: 'o', call: callWords[bl.nr]}
}

// onFd is a process blocked reading or writing its fd: waiting on a
// stream (pipe, fifo, socket, terminal) counts as waiting on data, with
// the edges the file belongs to; on anything else (a disk file) the
// process is busy on its own.
func onFd(pid int, fd uint64, kind byte, ends []End) activity {
	var s unix.Stat_t
	if unix.Stat("/proc/"+strconv.Itoa(pid)+"/fd/"+strconv.FormatUint(fd, 10), &s) != nil {
		return activity{kind: 'o'}
	}
	switch s.Mode & unix.S_IFMT {
	case unix.S_IFIFO, unix.S_IFSOCK, unix.S_IFCHR:
	default:
		return activity{kind: 'o'}
	}
	key := FileKey{s.Dev, s.Ino}
	a := activity{kind: kind}
	for _, e := range ends {
		if e.Key == key && e.Write == (kind == 'W') {
			a.edges = e.Edges
			break
		}
	}
	return a
}

// runQueueTime is how long process pid waited on a run queue since the
// last sample (/proc/PID/schedstat: time on a CPU, time waiting for one,
// in ns).
func (p *procRec) runQueueTime(pid int) time.Duration {
	if p.sched == nil {
		var err error
		if p.sched, err = openProc(pid, "schedstat"); err != nil {
			return 0
		}
	}
	b, ok := p.sched.read()
	if !ok {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0
	}
	d, err := strconv.ParseUint(string(f[1]), 10, 64)
	if err != nil || d < p.delay {
		return 0
	}
	delta := d - p.delay
	p.delay = d
	return time.Duration(delta)
}

// readLiveIO notes what a running stage's main process wrote so far, for
// a pipe edge's bytes while the flow runs.
func (r *Recorder) readLiveIO(p *procRec, pid, i int) {
	if p.io == nil {
		var err error
		if p.io, err = openProc(pid, "io"); err != nil {
			return
		}
	}
	b, ok := p.io.read()
	if !ok {
		return
	}
	r.setLiveIO(i, parseIO(b))
}

// setLiveIO notes what stage i's main process read and wrote so far.
func (r *Recorder) setLiveIO(i int, io IO) {
	r.stages[i].liveIO = io
	for _, e := range r.edges {
		if e.spec.Producer == i && e.spec.Counted == nil {
			e.liveBytes = io.Written
		}
	}
}

// processes lists the run's processes now: the cgroup's list where the
// run has a cgroup, else the stages' own processes and, every scanEvery,
// the others of their process groups found in /proc.
func (r *Recorder) processes(now time.Time) []int {
	if len(r.o.Procs) > 0 {
		if r.procsFiles == nil {
			r.procsFiles = make([]*os.File, len(r.o.Procs))
			for i, name := range r.o.Procs {
				r.procsFiles[i], _ = os.Open(name)
			}
		}
		var all []int
		ok := true
		for _, f := range r.procsFiles {
			pids, fok := readPids(f, &r.procsBuf)
			ok = ok && fok
			all = append(all, pids...)
		}
		if ok {
			return all
		}
	}
	var pids []int
	for pid := range r.procs {
		pids = append(pids, pid)
	}
	for _, s := range r.stages {
		if s.state == "running" && r.procs[s.pid] == nil {
			pids = append(pids, s.pid)
		}
	}
	if now.Sub(r.scanned) >= scanEvery && len(r.byPgrp) > 0 {
		r.scanned = now
		pids = append(pids, r.scanGroups()...)
	}
	return pids
}

// readPids reads a cgroup.procs file kept open, again from its start.
func readPids(f *os.File, buf *[]byte) ([]int, bool) {
	if f == nil {
		return nil, false
	}
	if len(*buf) == 0 {
		*buf = make([]byte, 4096)
	}
	var n int
	for {
		var err error
		n, err = f.ReadAt(*buf, 0)
		if n < len(*buf) || err != nil {
			if n <= 0 && err != nil && err != io.EOF {
				return nil, false
			}
			break
		}
		*buf = make([]byte, 2*len(*buf)) // a long list: read it whole
	}
	var pids []int
	for _, f := range bytes.Fields((*buf)[:n]) {
		if pid, err := strconv.Atoi(string(f)); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, true
}

// scanGroups finds, in /proc, processes in a running stage's process
// group that the sampler does not follow yet.
func (r *Recorder) scanGroups() []int {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	var pids []int
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil || r.procs[pid] != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + n + "/stat")
		if err != nil {
			continue
		}
		if st, ok := parseStat(b); ok {
			if _, ours := r.byPgrp[st.pgrp]; ours {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// sampleFill reads how full the rings and queues are (the channel
// tells). A pipe, fifo or tcp edge's fill is not read: FIONREAD on a pipe
// takes the pipe's lock, which a process splicing into it from a slow
// source (a terminal, a socket) holds while it waits for its input, so the
// sampler would wait with it, holding a copy of the stage's end. Its fill
// is what the samples saw its ends doing instead (sample): full while its
// writer was blocked writing into it, empty while its reader was blocked
// reading.
func (r *Recorder) sampleFill() {
	for _, e := range r.edges {
		if e.spec.Fill == nil {
			continue
		}
		used, capacity := e.spec.Fill()
		e.fill = used
		if used > e.peak {
			e.peak = used
		}
		if capacity > 0 {
			e.cap = capacity
			e.fillN++
			switch {
			case used >= capacity*9/10:
				e.fullN++
			case used == 0:
				e.emptyN++
			}
		}
	}
}
