package stats

import (
	"strconv"
	"time"
)

// What the Recorder makes of a replicated stage's copies: the runner's
// CopyTable says which process is which copy and what the ended ones
// used; the samples say what each copy was doing.

// copySamples is what the samples saw one copy do, as stageRec's counts.
type copySamples struct {
	n, nRun, nWrite, nRead, nOw int64
	cpuWait                     time.Duration
	doing                       string
	// The CPU time of the copy's current process (and its reaped
	// children) at the last sample: the table has only the ended ones'.
	livePid           int
	liveUser, liveSys time.Duration
}

// SetCopies hands the Recorder stage i's copy table (exec does, before
// the stage starts). The Recorder reads it until CloseCopies.
func (r *Recorder) SetCopies(i int, t *CopyTable) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stages[i]
	s.table, s.copies = t, make([]copySamples, t.Len())
}

// CloseCopies unmaps the copy tables that SetCopies handed over, under
// the Recorder's lock: a ps request may be answered (Snapshot) after the
// last report, until its connection is done, and must not read a table
// being unmapped. Reports made after it have no rows per copy.
func (r *Recorder) CloseCopies() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.stages {
		if s.table != nil {
			s.table.Close()
			s.table, s.copies = nil, nil
		}
	}
}

// copiesSample is one sample's view of every copy of the running
// replicated stages: nil when there are none, and then every method does
// nothing (the usual flow pays for no map).
type copiesSample struct {
	owner map[int]copyID // a copy's process -> its copy
	act   map[copyID]activity
	wait  map[copyID]time.Duration
	cpu   map[copyID][2]uint64 // the copy's own process's CPU ticks: user, system
	pid   map[copyID]int
}

type copyID struct{ stage, copy int }

// copiesNow reads which process is which copy now. r.mu is held.
func (r *Recorder) copiesNow() *copiesSample {
	var c *copiesSample
	for i, s := range r.stages {
		if s.table == nil || s.state != "running" {
			continue
		}
		if c == nil {
			c = &copiesSample{owner: map[int]copyID{}, act: map[copyID]activity{}, wait: map[copyID]time.Duration{},
				cpu: map[copyID][2]uint64{}, pid: map[copyID]int{}}
		}
		for k := range s.table.Len() {
			if pid := int(s.table.get(k, cwPid)); pid != 0 {
				c.owner[pid] = copyID{i, k}
			}
		}
	}
	return c
}

// saw notes what process pid (of stage i, child of ppid) was doing and
// the CPU ticks /proc gave it: a copy's, or one of its children's (a
// copy that is a shell).
func (c *copiesSample) saw(i, pid, ppid int, a activity, wait time.Duration, user, sys uint64) {
	if c == nil {
		return
	}
	id, ok := c.owner[pid]
	if ok {
		c.cpu[id], c.pid[id] = [2]uint64{user, sys}, pid
	} else {
		if id, ok = c.owner[ppid]; !ok {
			return
		}
	}
	if id.stage != i {
		return
	}
	c.wait[id] += wait
	if old, seen := c.act[id]; !seen || a.rank() > old.rank() {
		c.act[id] = a
	}
}

// count adds the sample to each copy that was seen.
func (c *copiesSample) count(stages []*stageRec) {
	if c == nil {
		return
	}
	for id, a := range c.act {
		cp := &stages[id.stage].copies[id.copy]
		cp.n++
		cp.cpuWait += c.wait[id]
		if pid, ok := c.pid[id]; ok {
			cp.livePid, cp.liveUser, cp.liveSys = pid, ticksTime(c.cpu[id][0]), ticksTime(c.cpu[id][1])
		}
		switch a.kind {
		case 'R':
			cp.nRun++
			cp.doing = "running"
		case 'W':
			cp.nWrite++
			cp.doing = "writing"
		case 'r':
			cp.nRead++
			cp.doing = "reading"
		default:
			cp.nOw++
			cp.doing = "elsewhere"
			if a.call != "" {
				cp.doing += " (" + a.call + ")"
			}
		}
	}
}

// copyFigures are stage s's copies' figures, or nil for a stage without
// a copy table.
func (s *stageRec) copyFigures() []Copy {
	if s.table == nil || s.table.words == nil {
		return nil
	}
	out := make([]Copy, s.table.Len())
	for k := range out {
		t := s.table.copy(k)
		cs := s.copies[k]
		c := Copy{
			Name: s.spec.Name + "[" + strconv.Itoa(k) + "]", Pid: t.pid, Processes: t.processes,
			Status: statusText(t.status), BusySec: t.busy.Seconds(),
			UserSec: t.user.Seconds(), SysSec: t.sys.Seconds(), MaxRSS: t.maxRSS,
			BytesRead: t.read, BytesWritten: t.written,
			Restarts: t.restarts, LastFailure: statusText(t.failure),
		}
		cpu := t.user + t.sys
		switch {
		case t.pid == 0 && c.Status != "":
		case t.pid == 0 && c.Restarts > 0:
			c.Doing = "restarting" // its process failed and the next waits out its back-off
		case t.pid == 0:
			c.Doing = "idle"
		}
		if t.pid != 0 {
			c.Doing = cs.doing
			if cs.livePid == t.pid { // so far, as the last sample saw it
				c.UserSec += cs.liveUser.Seconds()
				c.SysSec += cs.liveSys.Seconds()
				cpu += cs.liveUser + cs.liveSys
			}
		}
		if busy := t.busy.Seconds(); busy > 0 {
			c.Share.Running = min(cpu.Seconds()/busy, 1)
			c.Share.CPUWait = min(cs.cpuWait.Seconds()/busy, 1-c.Share.Running)
			c.Share.splitRest(1, cs.n, cs.nRun, cs.nWrite, cs.nRead, cs.nOw)
		}
		out[k] = c
	}
	return out
}

func ticksTime(t uint64) time.Duration {
	return time.Duration(float64(t) / ticksPerSec * float64(time.Second))
}
