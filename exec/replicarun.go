package exec

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/fdio"
	"github.com/ipcflow/ipcflow/isolate"
	"github.com/ipcflow/ipcflow/movers"
	"github.com/ipcflow/ipcflow/native"
	"github.com/ipcflow/ipcflow/restart"
	"github.com/ipcflow/ipcflow/stats"
)

// The replica runner: role "replicas", the process of a replicated stage
// (replicas.go plans it, docs/replicas.md tells why it works so). Its fds
// 0, 1 and 2 are the stage's in, out and err. It starts the copies as its
// own children: in its process group and cgroup (teardown's SIGTERM and
// SIGKILL to the group reach them), each with a parent-death SIGKILL (a
// SIGKILLed runner takes them along).
//
//	ordered    one process per block, at most N at a time, at most 2N
//	           blocks in flight; a block is a memfd (its stdin), and so
//	           is its output, sent into out when every block before it
//	           has been.
//	unordered  N long-lived copies; a block goes to the first whose input
//	           takes it; their outputs are merged a whole line at a time.
//	merge      N long-lived copies as unordered; their outputs are pipes
//	           given to the merge command as /dev/fd/3, 4, ...; its
//	           output is the stage's.
//
// The first copy (or merge) to fail, in time, decides the stage's status:
// the others get SIGTERM, and the runner exits with that status, or dies
// of that signal. Exit status 1 is the exception: grep's "no line
// selected" in one part of the input is no failure while another part
// had some, so a copy's 1 fails the stage only when every copy's status
// was 1 (docs/replicas.md, "Exit status"). A reader of out that leaves (EPIPE) stops every copy
// with SIGPIPE and the runner dies of SIGPIPE, as a single process would.
// Under the stage's restart policy a failing copy is started again first,
// until its budget is spent (replicarestart.go).

// replicaFirstBlock is the size of an ordered stage's first block.
const replicaFirstBlock = 1 << 20

// replicaPipeSize is the buffer of the pipes to and from each copy.
const replicaPipeSize = 1 << 20

type replicaRunner struct {
	cfg runnerConfig
	env []string
	// progs: the stage's pids limit, for each copy (and the merge) that
	// is a program; a copy that is a stage shell is handed it instead
	// (isolate.Programs), nil without one.
	progs *isolate.Programs

	mu      sync.Mutex
	cond    *sync.Cond
	live    map[int]bool // pids of copies (and the merge) not yet reaped
	failed  bool
	code    int
	sig     syscall.Signal
	gone    bool // out's reader left: stop as by SIGPIPE
	aborted bool
	stopped chan struct{} // closed at the abort
	turn    int           // ordered: the block whose output is written now
	// zeros and ones count the copies that exited 0 and 1.
	zeros, ones atomic.Int64
	// table is where the copies' figures go for ipcflow's stats
	// (stats.CopyTable), nil without one.
	table *stats.CopyTable
	// queue: the mq edge the copies take their work from (WorkQueue).
	queue *native.MQReader
	// oom: where the stage's memory group counts OOM kills, and its
	// limit (oomWatchEnv); "" without a memory cgroup.
	oomFile, oomLimit string
	ooms              int // the kills named so far, under mu
	// budgets: each copy's restarts under the stage's restart policy
	// (replicarestart.go), nil without one; under mu.
	budgets []*restart.Budget
	// inputClosed: long-lived copy k's feeder has closed its input.
	inputClosed []atomic.Bool
	// mergeEnded: the merge command has ended; nobody reads the copies'
	// outputs any more.
	mergeEnded atomic.Bool
}

func replicasRole(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "ipcflow: internal role replicas: want one JSON argument")
		return 70
	}
	closeStdioAgain()
	progs := isolate.TakePrograms() // before the environment is copied
	r := &replicaRunner{env: os.Environ(), live: map[int]bool{}, progs: progs}
	if err := json.Unmarshal([]byte(args[0]), &r.cfg); err != nil || r.cfg.Copies < 1 || r.cfg.Block < 1 {
		fmt.Fprintf(os.Stderr, "ipcflow: internal role replicas: bad configuration: %v\n", err)
		return 70
	}
	r.cond = sync.NewCond(&r.mu)
	r.stopped = make(chan struct{})
	r.inputClosed = make([]atomic.Bool, r.cfg.Copies)
	r.setUpRestarts()
	r.env, r.table = openCopyTable(r.env, r.cfg.Copies)
	r.env = r.watchOOM(r.env)
	if r.cfg.WorkQueue {
		q, err := r.openWorkQueue()
		if err != nil {
			fmt.Fprintf(os.Stderr, "ipcflow: stage %s: its queue: %v\n", r.cfg.Stage, err)
			return 1
		}
		r.queue = q
	}
	run := r.longLived
	switch r.cfg.Mode {
	case "ordered":
		run = r.ordered
	case "unordered", "merge":
	default:
		fmt.Fprintf(os.Stderr, "ipcflow: internal role replicas: unknown mode %q\n", r.cfg.Mode)
		return 70
	}
	done := make(chan struct{})
	go func() {
		run()
		close(done)
	}()
	// After a stop the input may never end (its writer waits for the
	// flow): the copies' ends decide, not the reading of the input.
	select {
	case <-done:
	case <-r.stopped:
	}
	return r.exit()
}

// exit waits for every copy to be reaped and ends the runner as the
// stage should end.
func (r *replicaRunner) exit() int {
	r.mu.Lock()
	for len(r.live) > 0 {
		r.cond.Wait()
	}
	gone, failed, code, sig := r.gone, r.failed, r.code, r.sig
	r.mu.Unlock()
	switch {
	case failed && sig != 0:
		dieOf(unix.Signal(sig))
	case failed:
		return code
	case gone:
		dieOf(unix.SIGPIPE)
	case r.ones.Load() > 0 && r.zeros.Load() == 0:
		return 1
	}
	return 0
}

// fail records the first failure and stops the rest.
func (r *replicaRunner) fail(code int, sig syscall.Signal, msg string) {
	r.mu.Lock()
	first := !r.failed && !r.aborted
	if first {
		r.failed, r.code, r.sig = true, code, sig
	}
	r.mu.Unlock()
	if first {
		if msg != "" {
			fmt.Fprintf(os.Stderr, "ipcflow: stage %s: %s\n", r.cfg.Stage, msg)
		}
		r.abort(syscall.SIGTERM)
	}
}

// readerGone: out's reader left. Every copy is stopped as SIGPIPE would.
func (r *replicaRunner) readerGone() {
	r.mu.Lock()
	first := !r.gone && !r.aborted
	r.gone = true
	r.mu.Unlock()
	if first {
		r.abort(syscall.SIGPIPE)
	}
}

// abort signals every live copy and wakes every waiter.
func (r *replicaRunner) abort(sig syscall.Signal) {
	r.mu.Lock()
	if !r.aborted {
		close(r.stopped)
	}
	r.aborted = true
	for pid := range r.live {
		syscall.Kill(pid, sig)
	}
	r.cond.Broadcast()
	r.mu.Unlock()
}

func (r *replicaRunner) isAborted() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.aborted
}

// spawn starts c, copy k (-1: the merge), with fds as its 0, 1, 2, ...
// and records it live; after an abort it is signalled at once.
func (r *replicaRunner) spawn(c runnerCmd, fds []int, k int) (int, error) {
	return r.start(c, fds, k, r.env, false)
}

// errStopped: a copy's restart that the runner did not make, since it
// was stopped meanwhile.
var errStopped = errors.New("stopped")

// start is spawn with env; again: the copy's restart, which is not made
// at all after an abort (errStopped).
func (r *replicaRunner) start(c runnerCmd, fds []int, k int, env []string, again bool) (int, error) {
	files := make([]uintptr, len(fds))
	for i, fd := range fds {
		files[i] = uintptr(fd)
	}
	if c.NotFound {
		return 0, fmt.Errorf("%s: command not found: %w", c.Argv[0], syscall.ENOENT)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if again && r.aborted {
		return 0, errStopped
	}
	path, argv := c.Path, c.Argv
	fork := r.progs.Start
	if r.progs != nil && len(argv) > 1 && argv[1] == internalMarker {
		// A stage shell: out of the pids group, like the runner; it
		// starts its programs in it.
		env = append(slices.Clip(env), r.progs.Env())
		fork = func(start func() error) error { return start() }
	} else {
		path, argv = limitedArgv(r.progs.RoleArgs(), path, argv)
	}
	var pid int
	err := fork(func() error {
		var err error
		pid, err = syscall.ForkExec(path, argv, &syscall.ProcAttr{Env: env, Files: files,
			Sys: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("%s: %w", c.Argv[0], err)
	}
	r.live[pid] = true
	r.table.Began(k, pid)
	if r.aborted {
		sig := syscall.SIGTERM
		if r.gone {
			sig = syscall.SIGPIPE
		}
		syscall.Kill(pid, sig)
	}
	return pid, nil
}

// copyEnd is how a process of the runner ended: its wait status, its
// rusage and its I/O (read before the reap, for the copy table).
type copyEnd struct {
	ws syscall.WaitStatus
	ru unix.Rusage
	io stats.IO
}

// wait waits for pid, copy k (-1: the merge), notes its figures in the
// copy table and forgets it, and says whether the runner was aborted
// meanwhile.
func (r *replicaRunner) wait(pid, k int) (syscall.WaitStatus, bool) {
	e := r.waitEnd(pid, k)
	return e.ws, r.forget(pid, k, e, false)
}

// waitEnd waits for pid, copy k (-1: the merge), and reaps it; it stays
// live until forget.
func (r *replicaRunner) waitEnd(pid, k int) *copyEnd {
	e := &copyEnd{}
	if r.table != nil && k >= 0 {
		// Its I/O is readable until it is reaped: wait without reaping.
		for unix.Waitid(unix.P_PID, pid, nil, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
		}
		e.io = stats.ReadIO(pid)
	}
	for {
		_, err := syscall.Wait4(pid, &e.ws, 0, (*syscall.Rusage)(unsafe.Pointer(&e.ru)))
		if err != syscall.EINTR {
			break
		}
	}
	return e
}

// forget notes how pid, copy k, ended in the copy table (restarted: the
// copy is started again) and forgets it, and says whether the runner was
// aborted meanwhile.
func (r *replicaRunner) forget(pid, k int, e *copyEnd, restarted bool) bool {
	r.table.Ended(k, unix.WaitStatus(e.ws), &e.ru, e.io, restarted)
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.live, pid)
	r.cond.Broadcast()
	return r.aborted
}

// reap waits for pid and judges how it ended: what names it in a failure.
func (r *replicaRunner) reap(pid, k int, what string) {
	ws, aborted := r.wait(pid, k)
	r.judge(ws, aborted, what, "")
}

// judge judges how a copy ended (what names it): note ends the line that
// reports its failure (a restart budget spent).
func (r *replicaRunner) judge(ws syscall.WaitStatus, aborted bool, what, note string) {
	switch {
	case ws.Exited() && ws.ExitStatus() == 0:
		r.zeros.Add(1)
	case ws.Signaled() && ws.Signal() == syscall.SIGPIPE:
		// Its reader finished (SPEC 6): not a failure.
	case aborted:
		// Stopped by the runner: the first failure is reported.
	case ws.Exited() && ws.ExitStatus() == 1:
		// grep's "nothing selected" in this copy's part: the stage
		// exits 1 only if every copy did (exit), as one grep over the
		// whole input would.
		r.ones.Add(1)
	case ws.Exited():
		r.fail(ws.ExitStatus(), 0, fmt.Sprintf("%s: %s%s", what, endText(ws), note))
	case ws.Signaled():
		r.fail(128+int(ws.Signal()), ws.Signal(), fmt.Sprintf("%s: %s%s", what, r.copyEndText(ws), note))
	}
}

// endText says how a process ended, in SPEC 6's words.
func endText(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "killed by signal " + signalName(ws.Signal())
	}
	return fmt.Sprintf("exit status %d", ws.ExitStatus())
}

// watchOOM takes oomWatchEnv from env (the copies do not get it).
func (r *replicaRunner) watchOOM(env []string) []string {
	env, v, _ := takeVar(env, oomWatchEnv)
	if limit, file, ok := strings.Cut(v, ":"); ok {
		r.oomLimit, r.oomFile = limit, file
		r.ooms = isolate.OOMKills(file)
	}
	return env
}

// copyEndText is how a copy's process ended, in a restart's line: a
// SIGKILL its memory group's OOM killer counted is named as the limit,
// as ipcflow names a stage's ("killed: memory limit 64MiB").
func (r *replicaRunner) copyEndText(ws syscall.WaitStatus) string {
	if r.oomFile != "" && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
		n := isolate.OOMKills(r.oomFile)
		r.mu.Lock()
		// One kill counted per SIGKILL seen: two copies killed at
		// once are both in the count the first of them reads.
		killed := n > r.ooms
		if killed {
			r.ooms++
		}
		r.mu.Unlock()
		if killed {
			return "killed: memory limit " + r.oomLimit
		}
	}
	return endText(ws)
}

func signalName(s syscall.Signal) string {
	if n := unix.SignalName(s); n != "" {
		return n
	}
	return fmt.Sprint(int(s))
}

// startFailed reports a copy that could not start: 127 when its program is
// missing, else 126, as for a stage.
func (r *replicaRunner) startFailed(err error) {
	code, msg := 126, err.Error()
	if errors.Is(err, syscall.ENOENT) {
		code = 127
		msg, _, _ = strings.Cut(msg, ": command not found")
		msg, _, _ = strings.Cut(msg, ": no such file or directory")
		msg += ": command not found"
	}
	r.fail(code, 0, msg)
}

// replicaPipe makes a close-on-exec pipe with the copies' buffer size.
func replicaPipe() (rd, wr int, err error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return 0, 0, fmt.Errorf("pipe: %w", err)
	}
	unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, replicaPipeSize)
	return p[0], p[1], nil
}

// ordered runs a copy per block, at most Copies at a time, and writes
// their outputs in the order of the blocks. A block is a memfd, filled
// from the input by splice(2), and is the copy's stdin; the copy's
// stdout is a memfd too, sent into out (splice, sendfile) when the copy
// has ended and every block before it has been sent. So a copy never
// waits for the runner, nor the runner for a copy's pipe, and no byte of
// the stream passes through user space but the ends of blocks.
func (r *replicaRunner) ordered() {
	size := min(r.cfg.Block, replicaFirstBlock)
	sp := movers.NewSplitter(0, size)
	// slots holds the copies (slots of the copy table, restart budgets)
	// that run no process now: a block takes one and gives it back when
	// its process has ended, so at most Copies run at once and no two in
	// one slot. Not seq%Copies: block seq+Copies may start while a slow
	// block seq still runs.
	slots := make(chan int, r.cfg.Copies)
	for k := range r.cfg.Copies {
		slots <- k
	}
	window := 2 * r.cfg.Copies
	var wg sync.WaitGroup
	// Blocks' memfds are used again once their copy has ended: their
	// pages are overwritten rather than freed and allocated anew.
	free := make(chan int, window+1)
	defer func() {
		for {
			select {
			case fd := <-free:
				unix.Close(fd)
			default:
				return
			}
		}
	}()
	for seq := 0; ; seq++ {
		var in int
		select {
		case in = <-free:
			unix.Seek(in, 0, 0)
		default:
			var err error
			if in, err = unix.MemfdCreate("ipcflow-block", unix.MFD_CLOEXEC); err != nil {
				r.fail(1, 0, "memfd: "+err.Error())
				in = -1
			}
		}
		if in < 0 {
			break
		}
		// Blocks start at replicaFirstBlock and double up to the block
		// size: a short input is still shared among the copies, and a
		// long one pays for few process starts (6 ms each on the
		// project's VM, more under load). Doubling only while copies
		// were quick (under 100 ms a block) kept blocks at 1 MiB on a
		// loaded machine, where every copy is slow, and awk[2] took
		// longer than awk[1]: the starts cost more than the work.
		if seq > 0 && size < r.cfg.Block {
			size = min(2*size, r.cfg.Block)
		}
		sp.SetSize(size)
		n, err := sp.NextFile(in)
		if err == nil {
			err = unix.Ftruncate(in, n) // a used memfd may be longer
		}
		if err != nil {
			unix.Close(in)
			r.fail(1, 0, err.Error())
			break
		}
		if n == 0 && seq > 0 {
			unix.Close(in)
			break
		}
		// An empty input still gets one copy, as one process would
		// have run over it (grep exits 1, an awk BEGIN prints).
		k := <-slots
		r.mu.Lock()
		for seq >= r.turn+window && !r.aborted {
			r.cond.Wait()
		}
		aborted := r.aborted
		r.mu.Unlock()
		if aborted {
			slots <- k
			unix.Close(in)
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.orderedBlock(seq, k, in, slots, free)
		}()
		if n == 0 {
			break
		}
	}
	wg.Wait()
}

// orderedBlock runs copy k over block seq, the memfd in, gives slot k
// back to slots, and sends its output into out in its turn.
func (r *replicaRunner) orderedBlock(seq, k, in int, slots chan int, free chan int) {
	defer r.advance(seq)
	giveBack := func() {
		select {
		case free <- in:
		default:
			unix.Close(in)
		}
	}
	out, ok := r.runBlock(seq, k, in)
	if !ok {
		unix.Close(in)
		slots <- k
		return
	}
	defer unix.Close(out)
	giveBack()
	slots <- k
	if mine, aborted := r.waitTurn(seq, true); !mine || aborted {
		return
	}
	var st unix.Stat_t
	if err := unix.Fstat(out, &st); err != nil {
		r.fail(1, 0, "stat a copy's output: "+err.Error())
		return
	}
	if st.Size > 0 {
		if err := movers.SendFile(1, out, st.Size); err != nil {
			r.outError(err)
		}
	}
}

// runBlock runs copy k over block seq, the memfd in, and returns the
// memfd its output is in, or false when none ran to its end (the
// failure is recorded). Under a restart policy a process that failed is
// followed by another over the same block after its back-off, its
// partial output dropped: the block's output is the last process's.
func (r *replicaRunner) runBlock(seq, k, in int) (int, bool) {
	what := fmt.Sprintf("copy %s[%d] (block %d)", r.cfg.Stage, k, seq)
	for again := false; ; again = true {
		out, err := unix.MemfdCreate("ipcflow-output", unix.MFD_CLOEXEC)
		if err != nil {
			r.fail(1, 0, "memfd: "+err.Error())
			return -1, false
		}
		stdin := in
		if again {
			if stdin, err = reopenBlock(in); err != nil {
				unix.Close(out)
				r.fail(1, 0, err.Error())
				return -1, false
			}
		}
		pid, started, err := r.startCopy(k, []int{stdin, out, 2}, again)
		if again {
			unix.Close(stdin)
		}
		if err != nil {
			unix.Close(out)
			if err != errStopped {
				r.startFailed(err)
			}
			return -1, false
		}
		e := r.waitEnd(pid, k)
		// A block's process that exited 0 or 1 has done its block:
		// under restart always too, it is not run again.
		restart, wait, note := r.again(k, what, e.ws, started, true)
		aborted := r.forget(pid, k, e, restart)
		if !restart {
			r.judge(e.ws, aborted, what, note)
			return out, true
		}
		unix.Close(out) // the next process writes the block's output anew
		if !r.backoff(wait) {
			return -1, false
		}
	}
}

// advance makes block seq+1 the current one.
func (r *replicaRunner) advance(seq int) {
	r.mu.Lock()
	if r.turn == seq {
		r.turn = seq + 1
	}
	r.cond.Broadcast()
	r.mu.Unlock()
}

// waitTurn waits until block seq is the current one; false after an abort.
func (r *replicaRunner) waitTurn(seq int, block bool) (mine, aborted bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for block && r.turn != seq && !r.aborted {
		r.cond.Wait()
	}
	return r.turn == seq, r.aborted
}

// outError handles a failed write into out: its reader left, or worse.
func (r *replicaRunner) outError(err error) {
	if fdio.IsGone(err) {
		r.readerGone()
		return
	}
	r.fail(1, 0, "write: "+err.Error())
}

// longLived runs the unordered and merge modes: Copies copies for the
// whole input, each block to the first copy whose input takes it.
func (r *replicaRunner) longLived() {
	n := r.cfg.Copies
	merge := r.cfg.Mode == "merge"
	ins := make([]int, n)
	outs := make([]int, n) // the copies' stdout, read by the runner or the merge
	mergeFds := []int{}
	var wg sync.WaitGroup
	var lm *movers.LineMerger
	if !merge {
		lm = movers.NewLineMerger(1)
	}
	started := 0
	for i := range n {
		inR, inW, err := replicaPipe()
		if err != nil {
			r.fail(1, 0, err.Error())
			break
		}
		outR, outW, err := replicaPipe()
		if err != nil {
			unix.Close(inR)
			unix.Close(inW)
			r.fail(1, 0, err.Error())
			break
		}
		pid, t0, err := r.startCopy(i, []int{inR, outW, 2}, false)
		if err != nil || r.cfg.Restart == nil {
			// Without a restart policy the copy holds its ends alone;
			// with one the runner holds them for its next process
			// (runLong), so the others see neither EPIPE nor EOF while
			// it is down.
			unix.Close(inR)
			unix.Close(outW)
			inR, outW = -1, -1
		}
		if err != nil {
			unix.Close(inW)
			unix.Close(outR)
			r.startFailed(err)
			break
		}
		ins[i], outs[i] = inW, outR
		started++
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.runLong(i, pid, t0, inR, outW)
		}()
		if merge {
			mergeFds = append(mergeFds, outR)
		}
	}
	if merge && started == n {
		null, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			r.fail(1, 0, err.Error())
		} else {
			pid, err := r.spawn(*r.cfg.Merge, append([]int{null, 1, 2}, mergeFds...), -1)
			unix.Close(null)
			if err != nil {
				r.startFailed(err)
			} else {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r.reapMerge(pid)
				}()
			}
		}
	}
	if merge {
		for _, fd := range mergeFds {
			unix.Close(fd)
		}
	} else {
		for i := range started {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := lm.Copy(outs[i]); err != nil {
					r.outError(err)
				}
				unix.Close(outs[i])
			}()
		}
	}
	if r.cfg.WorkQueue {
		if started == n {
			r.feedFromQueue(r.queue, ins[:started])
		} else {
			for _, in := range ins[:started] {
				unix.Close(in)
			}
		}
		wg.Wait()
		if err := lm.Finish(); err != nil {
			r.outError(err)
		}
		return
	}
	// Feed: a block goes to the first copy whose feeder is free. Blocks
	// of 1 MiB: long-lived copies cost no process start per block, and
	// small blocks share the input evenly and hold little memory.
	sp := movers.NewSplitter(0, min(r.cfg.Block, replicaFirstBlock))
	blocks := make(chan *movers.Block)
	var feeders sync.WaitGroup
	for i := range started {
		feeders.Add(1)
		go func() {
			defer feeders.Done()
			defer r.closeInput(i, ins[i])
			for b := range blocks {
				err := movers.WriteAll(ins[i], b.Data)
				sp.Put(b)
				if err != nil {
					// This copy stopped reading (its block is lost, as
					// the rest of a single process's input would be):
					// the others take the rest; its status says whether
					// that was right.
					return
				}
			}
		}()
	}
	allGone := make(chan struct{})
	go func() {
		feeders.Wait()
		close(allGone)
	}()
	if started == n {
		for seq := 0; ; seq++ {
			blk, err := sp.Next(seq)
			if err != nil {
				r.fail(1, 0, "read: "+err.Error())
				break
			}
			if blk == nil || r.isAborted() {
				break
			}
			select {
			case blocks <- blk:
				continue
			case <-allGone:
				sp.Put(blk)
			}
			break
		}
	}
	close(blocks)
	feeders.Wait()
	wg.Wait()
	if lm != nil {
		if err := lm.Finish(); err != nil {
			r.outError(err)
		}
	}
}

// reapMerge judges the merge command. Its SIGPIPE means out's reader
// left: the copies are stopped as that would stop them.
func (r *replicaRunner) reapMerge(pid int) {
	ws, aborted := r.wait(pid, -1)
	r.mergeEnded.Store(true)
	switch {
	case ws.Exited() && ws.ExitStatus() == 0:
	case ws.Signaled() && ws.Signal() == syscall.SIGPIPE:
		r.readerGone()
	case aborted:
	case ws.Exited():
		r.fail(ws.ExitStatus(), 0, fmt.Sprintf("%s merge: exit status %d", r.cfg.Stage, ws.ExitStatus()))
	case ws.Signaled():
		r.fail(128+int(ws.Signal()), ws.Signal(), fmt.Sprintf("%s merge: killed by signal %s", r.cfg.Stage, signalName(ws.Signal())))
	}
}
