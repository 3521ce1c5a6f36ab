package stats

import (
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// StageSpec is a stage as the Recorder knows it.
type StageSpec struct {
	Name string
	Uses []string // the semaphores it takes before it starts
	// Copies is how many copies of its command a replicated stage runs
	// (SPEC 11); 0 or 1 for a stage without replicas. The copies are
	// the stage's process's children: its figures are theirs too.
	Copies int
	// Host is where a remote stage runs (SPEC 13); "" for this machine.
	// Its figures are its stand-in's here: CPU, memory and bytes of the
	// ssh sessions that carry it, not of the command on the host.
	Host string
}

// EdgeSpec is an edge as the Recorder knows it.
type EdgeSpec struct {
	ID, From, To, Type string
	// Producer and Consumer are stage indexes, or -1 for ipcflow's own
	// stdin or stdout.
	Producer, Consumer int
	// Counted, when set, gives what a bridge or mover of ipcflow's counted
	// of the bytes it moved: bytes, records, datagrams lost.
	Counted func() (bytes, records, lost int64)
	Records bool // the type has records (messages, datagrams, commits)
	// Fill, when set, gives how much the edge's object holds now and its
	// size (0: unbounded). Otherwise the fill of a pipe, fifo or socket
	// edge is read at the consumer's end (sample.go).
	Fill func() (used, capacity int64)
}

// End is one fd a stage's process got, that belongs to edges: Key
// identifies the file (a pipe, fifo or socket), Edges which edges its
// bytes belong to (a tee's or join's pipe carries several).
type End struct {
	Fd    int
	Key   FileKey
	Write bool
	Edges []int
	// Capacity is the pipe's size (F_GETPIPE_SZ), for an edge whose fill
	// the samples infer from its ends (sampleFill); 0 when not a pipe.
	Capacity int64
}

// Options set up a Recorder.
type Options struct {
	Script, Run string
	// Interval between samples while the flow runs; 0 samples only when
	// asked (Snapshot, for ps).
	Interval time.Duration
	// Procs are the cgroup.procs files that together list every process
	// of the run (the run's group's, or its leaf's and its limited
	// stages' groups'), or none: then the stages' processes are found by
	// process group in /proc, less often.
	Procs []string
}

// DefaultInterval is how often --stats and --monitor sample: 25 times a
// second, some 20 µs of ipcflow's CPU per process of the flow each time
// (BenchmarkSample; the report says what it cost). The first
// StartInterval of a run is sampled every StartInterval/10, so that a
// short run is seen too.
const (
	DefaultInterval = 40 * time.Millisecond
	StartInterval   = 200 * time.Millisecond
)

// Recorder collects a run's figures. exec calls its stage methods from
// its supervisor; the sampler and Snapshot run alongside, so every
// method locks.
type Recorder struct {
	o       Options
	started time.Time

	mu      sync.Mutex
	stages  []*stageRec
	edges   []*edgeRec
	byPgrp  map[int]int // a running stage's process group -> stage
	procs   map[int]*procRec
	scanned time.Time // when /proc was last scanned for stages' processes
	// procsFiles are the run's cgroup.procs files, kept open
	// (Options.Procs).
	procsFiles []*os.File
	procsBuf   []byte
	samples    int64
	cpu        time.Duration // the sampler's own
	first      *time.Timer   // starts sampleLoop at the first sample
	stop       chan struct{}
	done       chan struct{}
	// stopped: Stop has returned; no sample touches a channel or /proc
	// again (the run's objects go next).
	stopped bool
}

type stageRec struct {
	spec               StageSpec
	state              string // pending, semaphore, running, done, skipped
	status             string
	pid                int
	ready, start, end  time.Time
	ru                 unix.Rusage
	ended              bool
	io                 IO
	ends               []End
	n, nRun            int64         // samples taken while it ran, and those it ran
	nWrite, nRead, nOw int64         // ... blocked writing, reading, elsewhere
	cpuWait            time.Duration // its processes' time on a run queue (schedstat)
	// While it runs: its processes' CPU ticks at the last sample, and
	// what its first process read and wrote so far.
	liveUser, liveSys uint64
	liveIO            IO
	doing             string
	// elsewhere gives the figures of a stage whose process runs where
	// this host's /proc cannot see it (SetElsewhere).
	elsewhere         func() (io IO, user, sys time.Duration, ok bool)
	elseUser, elseSys uint64 // its CPU ticks at the last figures
	// A replicated stage's copies: the runner's table, and what the
	// samples saw each copy do.
	table  *CopyTable
	copies []copySamples
	// A restartable stage (SPEC 14): how many times it was restarted,
	// and how its last failed copy ended.
	restarts    int
	lastFailure string
}

type edgeRec struct {
	spec           EdgeSpec
	full, writerN  int64 // samples its writer was blocked writing into it / taken while it ran
	empty, readerN int64 // samples its reader was blocked reading from it / taken while it ran
	// looks at its fill: how many, and how many found it (nearly) full
	// or empty. A writer woken as its reader takes a page is runnable,
	// not blocked, most of the time it waits: the fill still tells.
	fillN, fullN, emptyN int64
	fill, peak, cap      int64
	liveBytes            int64 // what the writer wrote so far (pipe edges, while it runs)
}

// sawFull and sawEmpty are a pipe edge's fill as its ends showed it: a
// writer blocked writing means no room left, a reader blocked reading
// means nothing in it.
func (e *edgeRec) sawFull() {
	if e.spec.Fill == nil && e.cap > 0 {
		e.fill, e.peak = e.cap, e.cap
	}
}

func (e *edgeRec) sawEmpty() {
	if e.spec.Fill == nil {
		e.fill = 0
	}
}

// procRec is one process of a stage, its /proc files kept open.
type procRec struct {
	stat, sys, io, sched *procFile
	delay                uint64 // schedstat's run-queue time at the last sample, ns
}

// New makes a Recorder for a flow of these stages and edges.
func New(o Options, stages []StageSpec, edges []EdgeSpec) *Recorder {
	r := &Recorder{o: o, started: time.Now(), byPgrp: map[int]int{}, procs: map[int]*procRec{}}
	for _, s := range stages {
		r.stages = append(r.stages, &stageRec{spec: s, state: "pending"})
	}
	for _, e := range edges {
		r.edges = append(r.edges, &edgeRec{spec: e})
	}
	return r
}

// Ready marks stage i as ready to start: its life begins, and it waits
// for its semaphores, if any.
func (r *Recorder) Ready(i int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stages[i]
	s.ready = time.Now()
	if len(s.spec.Uses) > 0 {
		s.state = "semaphore"
		s.doing = "waiting for semaphore " + strings.Join(s.spec.Uses, ", ")
	}
}

// Started records that stage i's process pid started with these ends.
func (r *Recorder) Started(i, pid int, ends []End) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stages[i]
	now := time.Now()
	if s.ready.IsZero() {
		s.ready = now
	}
	s.start, s.pid, s.ends, s.state, s.doing = now, pid, ends, "running", "running"
	r.byPgrp[pid] = i
	for _, e := range ends {
		for _, ei := range e.Edges {
			if ed := r.edges[ei]; ed.spec.Fill == nil && e.Capacity > 0 {
				ed.cap = e.Capacity
			}
		}
	}
}

// SetElsewhere says that stage i runs where this host's /proc cannot see
// it (on another host, SPEC 13): figures gives what its process there
// read and wrote and its CPU time so far, which the samples take in
// place of its local process's (the stand-in's). exec calls it before
// Started, and hands Ended the stage's own figures in the end.
func (r *Recorder) SetElsewhere(i int, figures func() (io IO, user, sys time.Duration, ok bool)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stages[i].elsewhere = figures
}

// Ended records how stage i ended: status in SPEC 6's words, its rusage
// (wait4's, its reaped descendants included) and its I/O (ReadIO before
// it was reaped).
func (r *Recorder) Ended(i int, status string, ru *unix.Rusage, io IO) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stages[i]
	s.end, s.status, s.state, s.doing, s.ended = time.Now(), status, "done", "", true
	if ru != nil {
		s.ru = *ru
	}
	if io.OK {
		s.io = io
	}
	delete(r.byPgrp, s.pid)
}

// Restarted records that a copy of stage i ended and another starts
// after wait; failure is how the last failed copy ended ("" if none
// failed: restart always).
func (r *Recorder) Restarted(i int, failure string, wait time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stages[i]
	s.restarts++
	s.lastFailure = failure
	s.state, s.doing = "restarting", "restarting in "+wait.String()
	delete(r.byPgrp, s.pid)
}

// Skipped records that stage i never ran.
func (r *Recorder) Skipped(i int, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stages[i]
	s.state, s.doing = "skipped", ""
	s.status = "skipped"
	if why != "" {
		s.status += ": " + why
	}
	if s.ready.IsZero() {
		s.ready = time.Now()
	}
	s.end = time.Now()
}

// Start begins sampling every Options.Interval, if set.
func (r *Recorder) Start() {
	if r.o.Interval <= 0 || r.stop != nil {
		return
	}
	r.stop, r.done = make(chan struct{}), make(chan struct{})
	// The sampler's goroutine and thread come with the first sample: a
	// run over before it (most short ones) pays for neither.
	r.first = time.AfterFunc(min(r.o.Interval, StartInterval/10), r.sampleLoop)
}

// Stop ends sampling and lets go of every /proc file it holds.
func (r *Recorder) Stop() {
	if r.stop != nil {
		if r.first.Stop() {
			close(r.done) // the loop never began
		}
		close(r.stop)
		<-r.done
		r.stop = nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	for pid, p := range r.procs {
		p.close()
		delete(r.procs, pid)
	}
	for _, f := range r.procsFiles {
		if f != nil {
			f.Close()
		}
	}
	r.procsFiles = nil
}

// sampleLoop samples until Stop, on a thread of its own so that its CPU
// time can be read (RUSAGE_THREAD) and reported.
func (r *Recorder) sampleLoop() {
	defer close(r.done)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	every := min(r.o.Interval, StartInterval/10)
	t := time.NewTimer(0) // the first sample is due now
	defer t.Stop()
	// The thread runs nothing else while locked: its CPU time is the
	// sampler's, read now and then rather than a system call per sample.
	start := threadCPU()
	defer func() {
		cpu := threadCPU() - start
		r.mu.Lock()
		r.cpu = cpu
		r.mu.Unlock()
	}()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			if time.Since(r.started) >= StartInterval {
				every = r.o.Interval
			}
			t.Reset(every)
			r.mu.Lock()
			r.sample(time.Now(), false)
			if r.samples%16 == 0 {
				r.cpu = threadCPU() - start
			}
			r.mu.Unlock()
		}
	}
}

func threadCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_THREAD, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (p *procRec) close() {
	for _, f := range []*procFile{p.stat, p.sys, p.io, p.sched} {
		if f != nil {
			f.close()
		}
	}
}

// Snapshot is the run's figures now, for --monitor and ps. With fresh set
// (ps, which has no sampler running), one sample is taken first.
func (r *Recorder) Snapshot(fresh bool) *Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	if fresh {
		r.sample(time.Now(), true)
	}
	return r.report(time.Now(), nil)
}

// Final is the run's figures at its end, with ipcflow's exit status.
func (r *Recorder) Final(status int) *Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.report(time.Now(), &status)
}

// RunningPids lists the pids of the stages running now.
func (r *Recorder) RunningPids() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var pids []int
	for _, s := range r.stages {
		if s.state == "running" {
			pids = append(pids, s.pid)
		}
	}
	return pids
}
