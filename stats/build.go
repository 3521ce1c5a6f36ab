package stats

import (
	"os"
	"time"
)

// report builds the Report from what was recorded. r.mu is held.
func (r *Recorder) report(now time.Time, status *int) *Report {
	rep := &Report{
		Version: Version,
		Script:  r.o.Script,
		Run:     r.o.Run,
		Pid:     os.Getpid(),
		Started: r.started,
		WallSec: now.Sub(r.started).Seconds(),
		Live:    status == nil,
		Status:  status,
		Stages:  []Stage{},
		Edges:   []Edge{},
		Sampler: Sampler{IntervalMs: float64(r.o.Interval) / float64(time.Millisecond), Samples: r.samples, CPUSec: r.cpu.Seconds()},
	}
	for _, s := range r.stages {
		rep.Stages = append(rep.Stages, s.figures(now))
	}
	for _, e := range r.edges {
		rep.Edges = append(rep.Edges, r.edgeFigures(e, rep.Stages, now))
	}
	rep.Bottleneck, rep.NoBottleneck = r.bottleneck(rep)
	return rep
}

// figures are stage s's figures as of now.
func (s *stageRec) figures(now time.Time) Stage {
	st := Stage{Name: s.spec.Name, Host: s.spec.Host, Pid: s.pid, State: s.state, Status: s.status, Doing: s.doing, Restarts: s.restarts, LastFailure: s.lastFailure}
	if s.spec.Copies > 1 {
		st.Copies = s.spec.Copies
	}
	// A replicated stage's copies restart one by one (their runner's
	// policy): the stage's restarts are theirs.
	if n, failure := s.table.Restarts(); n > 0 {
		st.Restarts += n
		st.LastFailure = failure
	}
	end := s.end
	if end.IsZero() {
		end = now
	}
	var life time.Duration
	if !s.ready.IsZero() {
		life = end.Sub(s.ready)
	}
	st.WallSec = life.Seconds()
	switch {
	case s.ended:
		st.UserSec = time.Duration(s.ru.Utime.Nano()).Seconds()
		st.SysSec = time.Duration(s.ru.Stime.Nano()).Seconds()
		st.MaxRSS = s.ru.Maxrss * 1024
		st.BytesRead, st.BytesWritten = s.io.Read, s.io.Written
	case s.state == "running":
		// So far, as the last sample saw it (no max RSS: wait4 tells).
		st.UserSec = float64(s.liveUser) / ticksPerSec
		st.SysSec = float64(s.liveSys) / ticksPerSec
		st.BytesRead, st.BytesWritten = s.liveIO.Read, s.liveIO.Written
	}
	st.Share = s.shares(life, now)
	st.Replicas = s.copyFigures()
	return st
}

// shares split stage s's life. Its time on a CPU comes from its rusage
// when it has ended (exact); the semaphore wait from when it was ready
// and when it started (exact); the rest is split as the samples saw it.
// A sample that saw it runnable while its CPU time says it was not on a
// CPU counts as elsewhere (it waited for a CPU).
func (s *stageRec) shares(life time.Duration, now time.Time) Shares {
	var sh Shares
	if life <= 0 || s.state == "skipped" {
		return sh
	}
	if !s.start.IsZero() && len(s.spec.Uses) > 0 {
		sh.Semaphore = s.start.Sub(s.ready).Seconds() / life.Seconds()
	} else if s.start.IsZero() && s.state == "semaphore" {
		sh.Semaphore = 1
		return sh
	}
	rest := 1 - sh.Semaphore
	if s.n == 0 {
		if s.ended {
			cpu := time.Duration(s.ru.Utime.Nano() + s.ru.Stime.Nano())
			sh.Running = min(cpu.Seconds()/life.Seconds(), rest)
		}
		sh.Other = rest - sh.Running
		return sh
	}
	n := float64(s.n)
	run := float64(s.nRun) / n * rest
	if s.ended {
		cpu := time.Duration(s.ru.Utime.Nano() + s.ru.Stime.Nano())
		run = min(cpu.Seconds()/life.Seconds(), rest)
	}
	sh.Running = run
	sh.CPUWait = min(s.cpuWait.Seconds()/life.Seconds(), rest-run)
	sh.splitRest(rest, s.n, s.nRun, s.nWrite, s.nRead, s.nOw)
	return sh
}

// splitRest shares out what is left of rest (a life, less its semaphore
// wait) after its time on and waiting for a CPU, as the n samples saw it
// off a CPU: blocked writing, reading, or elsewhere. A runnable sample
// beyond the time on and waiting for a CPU counts as elsewhere.
func (sh *Shares) splitRest(rest float64, n, nRun, nWrite, nRead, nOw int64) {
	left := rest - sh.Running - sh.CPUWait
	excess := max(0, float64(nRun)-(sh.Running+sh.CPUWait)/rest*float64(n))
	waitN := float64(nWrite+nRead+nOw) + excess
	if waitN == 0 {
		sh.Other = left
		return
	}
	sh.Writing = left * float64(nWrite) / waitN
	sh.Reading = left * float64(nRead) / waitN
	sh.Other = left * (float64(nOw) + excess) / waitN
}

// edgeFigures are edge e's figures.
func (r *Recorder) edgeFigures(e *edgeRec, stages []Stage, now time.Time) Edge {
	ed := Edge{ID: e.spec.ID, From: e.spec.From, To: e.spec.To, Type: e.spec.Type,
		Fill: e.fill, PeakFill: e.peak, Capacity: e.cap, FillFrom: "ends"}
	if e.spec.Fill != nil {
		ed.FillFrom = "object"
	}
	if e.spec.Counted != nil {
		b, rec, lost := e.spec.Counted()
		ed.Bytes, ed.BytesFrom, ed.Lost = b, "counted", lost
		if e.spec.Records {
			ed.Records = &rec
		}
	} else {
		ed.Bytes, ed.BytesFrom = r.processBytes(e, stages)
	}
	if p := e.spec.Producer; p >= 0 && stages[p].WallSec > 0 {
		ed.ThroughputBps = float64(ed.Bytes) / stages[p].WallSec
	} else if c := e.spec.Consumer; c >= 0 && stages[c].WallSec > 0 {
		ed.ThroughputBps = float64(ed.Bytes) / stages[c].WallSec
	}
	return ed
}

// processBytes is what went into an fd edge nobody in ipcflow counts:
// the kernel counts each process's reads and writes, not each pipe's, so
// the edge's bytes are what its writer wrote in all when the edge is its
// only output (so far, while it runs), else not known. Not its reader's
// reads: those count the dynamic loader's reads of libraries, and say
// nothing of bytes written that nobody read.
func (r *Recorder) processBytes(e *edgeRec, stages []Stage) (int64, string) {
	p := e.spec.Producer
	if p < 0 || !r.onlyEdge(p, true) {
		return 0, ""
	}
	switch s := r.stages[p]; {
	case s.ended && s.io.OK:
		return stages[p].BytesWritten, "writer io"
	case s.state == "running":
		return e.liveBytes, "writer io"
	}
	return 0, ""
}

// onlyEdge reports whether stage i has exactly one end of the given
// direction among its ends (its stdin or stdout and its ports).
func (r *Recorder) onlyEdge(i int, write bool) bool {
	n := 0
	for _, e := range r.stages[i].ends {
		if e.Write == write {
			n++
		}
	}
	return n == 1
}
