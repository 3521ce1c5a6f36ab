package exec

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/fdio"
	"github.com/ipcflow/ipcflow/movers"
	"github.com/ipcflow/ipcflow/native"
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

// replicaFirstBlock is the size of an ordered stage's first block.
const replicaFirstBlock = 1 << 20

// replicaPipeSize is the buffer of the pipes to and from each copy.
const replicaPipeSize = 1 << 20

type replicaRunner struct {
	cfg runnerConfig
	env []string

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
}

func replicasRole(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "ipcflow: internal role replicas: want one JSON argument")
		return 70
	}
	r := &replicaRunner{env: os.Environ(), live: map[int]bool{}}
	if err := json.Unmarshal([]byte(args[0]), &r.cfg); err != nil || r.cfg.Copies < 1 || r.cfg.Block < 1 {
		fmt.Fprintf(os.Stderr, "ipcflow: internal role replicas: bad configuration: %v\n", err)
		return 70
	}
	r.cond = sync.NewCond(&r.mu)
	r.stopped = make(chan struct{})
	r.env, r.table = openCopyTable(r.env, r.cfg.Copies)
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
	files := make([]uintptr, len(fds))
	for i, fd := range fds {
		files[i] = uintptr(fd)
	}
	if c.NotFound {
		return 0, fmt.Errorf("%s: command not found: %w", c.Argv[0], syscall.ENOENT)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := syscall.ForkExec(c.Path, c.Argv, &syscall.ProcAttr{Env: r.env, Files: files,
		Sys: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}})
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

// wait waits for pid, copy k (-1: the merge), notes its figures in the
// copy table and forgets it, and says whether the runner was aborted
// meanwhile.
func (r *replicaRunner) wait(pid, k int) (syscall.WaitStatus, bool) {
	var ws syscall.WaitStatus
	var ru unix.Rusage
	var io stats.IO
	if r.table != nil && k >= 0 {
		// Its I/O is readable until it is reaped: wait without reaping.
		for unix.Waitid(unix.P_PID, pid, nil, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
		}
		io = stats.ReadIO(pid)
	}
	for {
		_, err := syscall.Wait4(pid, &ws, 0, (*syscall.Rusage)(unsafe.Pointer(&ru)))
		if err != syscall.EINTR {
			break
		}
	}
	r.table.Ended(k, unix.WaitStatus(ws), &ru, io)
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.live, pid)
	r.cond.Broadcast()
	return ws, r.aborted
}

// reap waits for pid and judges how it ended: what names it in a failure.
func (r *replicaRunner) reap(pid, k int, what string) {
	ws, aborted := r.wait(pid, k)
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
		r.fail(ws.ExitStatus(), 0, fmt.Sprintf("%s: exit status %d", what, ws.ExitStatus()))
	case ws.Signaled():
		r.fail(128+int(ws.Signal()), ws.Signal(), fmt.Sprintf("%s: killed by signal %s", what, signalName(ws.Signal())))
	}
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
	running := make(chan struct{}, r.cfg.Copies)
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
		running <- struct{}{}
		r.mu.Lock()
		for seq >= r.turn+window && !r.aborted {
			r.cond.Wait()
		}
		aborted := r.aborted
		r.mu.Unlock()
		if aborted {
			<-running
			unix.Close(in)
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.orderedBlock(seq, in, running, free)
		}()
		if n == 0 {
			break
		}
	}
	wg.Wait()
}

// orderedBlock runs one copy over block seq, the memfd in, and sends its
// output into out in its turn.
func (r *replicaRunner) orderedBlock(seq, in int, running chan struct{}, free chan int) {
	defer r.advance(seq)
	giveBack := func() {
		select {
		case free <- in:
		default:
			unix.Close(in)
		}
	}
	out, err := unix.MemfdCreate("ipcflow-output", unix.MFD_CLOEXEC)
	if err != nil {
		unix.Close(in)
		<-running
		r.fail(1, 0, "memfd: "+err.Error())
		return
	}
	defer unix.Close(out)
	k := seq % r.cfg.Copies
	pid, err := r.spawn(r.cfg.Copy, []int{in, out, 2}, k)
	if err != nil {
		unix.Close(in)
		<-running
		r.startFailed(err)
		return
	}
	r.reap(pid, k, fmt.Sprintf("copy %s[%d] (block %d)", r.cfg.Stage, k, seq))
	giveBack()
	<-running
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
		pid, err := r.spawn(r.cfg.Copy, []int{inR, outW, 2}, i)
		unix.Close(inR)
		unix.Close(outW)
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
			r.reap(pid, i, fmt.Sprintf("copy %s[%d]", r.cfg.Stage, i))
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
			defer unix.Close(ins[i])
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
