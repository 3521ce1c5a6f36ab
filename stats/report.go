// Package stats is what a run measures and how it is shown (SPEC 9): exec
// feeds a Recorder while a flow runs (each stage's start, end and rusage,
// each edge's counters); the Recorder samples what the kernel already
// tells about the stages (/proc) at a bounded rate; its Report is drawn
// as the --stats table, the --stats-json document, the --monitor view and
// `ipcflow ps`. It knows nothing of plans or parsers: exec hands it plain
// names, pids, file identities and counter functions.
//
// No byte of a pipe edge passes through ipcflow to be counted, and
// ipcflow holds no end of a stage's pipe (sample.go): what a stage sees
// of its edges (end of file, EPIPE) is what it sees without --stats.
package stats

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// Version is the --stats-json document's version (docs/stats.md has its
// schema). It changes when a field changes meaning or goes away; new
// fields may come without a new version.
const Version = 1

// Report is a run's figures: at its end (--stats, --stats-json), or while
// it runs (--monitor, ps; Live is then true).
type Report struct {
	Version    int         `json:"version"`
	Script     string      `json:"script"`
	Run        string      `json:"run"` // the run's id (its directory's name)
	Pid        int         `json:"pid"` // ipcflow's
	Started    time.Time   `json:"started"`
	WallSec    float64     `json:"wall_s"`
	Live       bool        `json:"live"`
	Status     *int        `json:"status"` // ipcflow's exit status; null while live
	Stages     []Stage     `json:"stages"`
	Edges      []Edge      `json:"edges"`
	Bottleneck *Bottleneck `json:"bottleneck"`
	// NoBottleneck says why none is named, when Bottleneck is null.
	NoBottleneck string  `json:"no_bottleneck,omitempty"`
	Sampler      Sampler `json:"sampler"`
}

// Stage is one stage's figures.
type Stage struct {
	Name string `json:"name"`
	// Copies: a replicated stage's copies (SPEC 11), counted in its
	// figures; absent for a stage without replicas.
	Copies int    `json:"copies,omitempty"`
	Host   string `json:"host,omitempty"` // a remote stage's host (SPEC 13)
	Pid    int    `json:"pid"`            // 0 before it started
	State  string `json:"state"`          // pending, semaphore, running, done, skipped
	// Status is how it ended, in SPEC 6's words: "exit status 0",
	// "killed by signal SIGTERM", "broken pipe", "skipped: prep failed".
	Status string `json:"status"`
	// Doing is what it did at the last sample, while it runs: "running",
	// "writing e2", "reading e1", "waiting for semaphore db", "sleeping".
	Doing string `json:"doing"`
	// Restarts: how many times a stage with a restart clause was started
	// again (SPEC 14), and LastFailure how its last failed copy ended;
	// both absent when there were none. A replicated stage's are its
	// copies' (its runner restarts them one by one).
	Restarts    int     `json:"restarts,omitempty"`
	LastFailure string  `json:"last_failure,omitempty"`
	WallSec     float64 `json:"wall_s"` // its life: from ready (semaphores included) to its end
	UserSec     float64 `json:"user_s"`
	SysSec      float64 `json:"sys_s"`
	// MaxRSS is the largest resident set of its process or any of its
	// descendants that it waited for (wait4's rusage), in bytes.
	MaxRSS       int64  `json:"max_rss_bytes"`
	BytesRead    int64  `json:"bytes_read"` // read(2)-family bytes, the kernel's /proc/PID/io rchar
	BytesWritten int64  `json:"bytes_written"`
	Share        Shares `json:"share"`
	// Replicas are a replicated stage's copies, one by one (the stage's
	// own figures above are theirs added up, with the replica runner's).
	Replicas []Copy `json:"replicas,omitempty"`
}

// Copy is one copy of a replicated stage (SPEC 11). In ordered mode copy
// k is the processes that ran in slot k, one after the other (a block
// takes a free slot); otherwise one process for the whole run.
type Copy struct {
	Name      string `json:"name"`      // NAME[k]
	Pid       int    `json:"pid"`       // its process now; 0 between blocks and once done
	Processes int    `json:"processes"` // processes it ran: the blocks it took, in ordered mode
	// Status: its first failure, else how its last process ended; ""
	// before one has. A failure followed by a restart is not its status
	// but its LastFailure.
	Status  string  `json:"status"`
	Doing   string  `json:"doing"`
	BusySec float64 `json:"busy_s"` // its processes' lives added up
	UserSec float64 `json:"user_s"`
	SysSec  float64 `json:"sys_s"`
	// MaxRSS is the largest of its processes' (with their waited-for
	// descendants), in bytes; 0 until one has ended.
	MaxRSS       int64 `json:"max_rss_bytes"`
	BytesRead    int64 `json:"bytes_read"`
	BytesWritten int64 `json:"bytes_written"`
	// Share splits its busy time as a stage's share splits its life.
	Share Shares `json:"share"`
	// Restarts: how many times its runner started it again (the stage's
	// restart policy applies per copy), and LastFailure how its last
	// restarted process ended; absent when never.
	Restarts    int    `json:"restarts,omitempty"`
	LastFailure string `json:"last_failure,omitempty"`
}

// Title is the stage's name as the table and the live view show it: with
// its copies as `NAME ×N`, as ipcflow graph writes a replicated stage,
// and its host as `NAME on HOST`.
func (s Stage) Title() string {
	t := s.Name
	if s.Copies > 1 {
		t = fmt.Sprintf("%s ×%d", s.Name, s.Copies)
	}
	if s.Host != "" {
		t += " on " + s.Host
	}
	return t
}

// RestartNote is what the table, the live view and ps add to a stage's
// status when it was restarted: "; restarted 3 times, last failure exit
// status 7"; "" when it never was.
func (s Stage) RestartNote() string { return restartNote(s.Restarts, s.LastFailure) }

// RestartNote is a copy's, as a stage's.
func (c Copy) RestartNote() string { return restartNote(c.Restarts, c.LastFailure) }

func restartNote(restarts int, lastFailure string) string {
	if restarts == 0 {
		return ""
	}
	n := fmt.Sprintf("; restarted %d times", restarts)
	if restarts == 1 {
		n = "; restarted once"
	}
	if lastFailure != "" {
		n += ", last failure " + lastFailure
	}
	return n
}

// Shares split a stage's life (fractions that add up to 1): on a CPU,
// ready to run but waiting for a CPU (the machine is busy), blocked
// writing (downstream full), blocked reading (upstream empty), waiting
// for a semaphore, and the rest (sleeping, waiting for a child or a disk).
type Shares struct {
	Running   float64 `json:"running"`
	CPUWait   float64 `json:"cpu_wait"`
	Writing   float64 `json:"writing"`
	Reading   float64 `json:"reading"`
	Semaphore float64 `json:"semaphore"`
	Other     float64 `json:"other"`
}

// Edge is one edge's figures (a fan-out group counts once per edge).
type Edge struct {
	ID   string `json:"id"`
	From string `json:"from"` // stage.port, or stdin
	To   string `json:"to"`
	Type string `json:"type"`
	// Bytes went into the edge. BytesFrom says how it is known:
	// "counted" (they pass a bridge of ipcflow's, which counts them), or
	// "writer io" (a pipe, fifo or tcp edge, whose bytes no one in ipcflow
	// sees: all its writer stage wrote, through write(2) and its kin, when
	// the edge is its one output; an upper bound, exact when it writes
	// nothing else, not even on stderr), or "" (not known: its writer is
	// not a stage, or has other outputs).
	Bytes     int64  `json:"bytes"`
	BytesFrom string `json:"bytes_from"`
	// Records are messages, datagrams or ring commits; null for a type
	// that has none (pipe, fifo, tcp).
	Records       *int64  `json:"records"`
	ThroughputBps float64 `json:"throughput_bps"` // bytes over its writer's life
	// Fill is how much its buffer held at the last sample, PeakFill the
	// most seen, Capacity the buffer's size (0 when unbounded or unknown).
	// FillFrom says how: "object" (the ring's cursors, the queue's
	// message count) or "ends" (a pipe's fill is not read, so as not to
	// wait on its lock: full while its writer was seen blocked writing
	// into it, empty while its reader was seen blocked reading; for a
	// bridged type, the pipe between the stage and the bridge).
	Fill     int64  `json:"fill_bytes"`
	PeakFill int64  `json:"peak_fill_bytes"`
	Capacity int64  `json:"capacity_bytes"`
	FillFrom string `json:"fill_from"`
	Lost     int64  `json:"lost"` // udp datagrams known lost
}

// Bottleneck names what limited the flow, with the evidence.
type Bottleneck struct {
	Stage     string `json:"stage"`
	Semaphore string `json:"semaphore,omitempty"` // when waiting for it limited the flow
	Evidence  string `json:"evidence"`
}

// String is the bottleneck's line: "sort: on CPU 97%, its input full 91%
// of the time".
func (b *Bottleneck) String() string { return b.Stage + ": " + b.Evidence }

// Sampler is what measuring cost: its interval, how many samples it took
// and the CPU time ipcflow spent taking them.
type Sampler struct {
	IntervalMs float64 `json:"interval_ms"`
	Samples    int64   `json:"samples"`
	CPUSec     float64 `json:"cpu_s"`
}

// WriteJSON writes r as one indented JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
