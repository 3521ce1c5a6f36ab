package movers

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/fdio"
)

// Fan-out: every destination gets the whole stream of the source, in order.
//
// While the destinations keep up, bytes never enter ipcflow: tee(2) puts a
// reference to the source pipe's pages into each destination pipe and a
// splice(2) into /dev/null then drops them from the source. The tee moves
// in lockstep, at the pace of the slowest destination, as tee(1) does, so
// equal readers cost no copies and no memory.
//
// But a destination that stops reading must not stop the others: if it
// did, the classic diamond `src -> {sort, cat} -> paste` would deadlock
// (paste waits for sort's output, sort for all of src, src for the tee, the
// tee for cat, cat for paste). The rule:
//
//   - A destination that has been full for teeStall (20 ms) without taking
//     a byte is "stopped": the tee goes on without it, and it gets what it
//     missed in a backlog of its own. Any byte it takes makes it live again.
//   - A backlog holds up to teeMemBound (4 MiB) in memory (a ring allocated
//     the first time that destination falls behind); beyond that it goes to
//     a spill file in spillDir, made with O_TMPFILE (or unlinked at once
//     where unsupported) so it has no name that could outlive the run. The
//     file is emptied whenever the destination catches up and closed with
//     it. So a stopped destination costs memory up to 4 MiB, then disk (in
//     the run directory: tmpfs under $XDG_RUNTIME_DIR), as much as the
//     others read ahead of it.
//   - A destination with a backlog is fed from it (write(2), when poll(2)
//     says it can take more). While it is taking bytes and its backlog is
//     teeSlack (1 MiB) or more, it sets the pace again: the source waits
//     until it has caught up completely, then it rejoins the tee.
//
// A destination whose reader has gone is dropped and its backlog
// discarded; when all have gone the source is closed, so the producer sees
// EPIPE. At the source's end of file each destination is closed as soon as
// its backlog is delivered (the caught-up ones at once: sort must see its
// end of input while cat's backlog still drains).
//
// A source that is not a pipe (ipcflow's own stdin: a terminal or a file)
// can't be tee'd: it is read into a buffer and written to each
// destination, with the same backlogs and pacing. So is a destination that
// is not a pipe (ipcflow's stdout on a terminal).

// teeMemBound is how much of a lagging destination's backlog stays in
// memory before the rest goes to its spill file.
// teeStall is how long a full destination may hold the others up before
// it counts as stopped; teeSlack is the backlog at which a destination
// that is still reading sets the pace again. (Variables so that tests can
// shrink them to reach the spill paths with little data.)
var (
	teeMemBound = 4 << 20
	teeStall    = 20 * time.Millisecond
	teeSlack    = int64(1 << 20)
)

// StartTee starts a fan-out from src to every dst. The Mover owns src and
// every dst (see Mover for ipcflow's own stdio). spillDir is where lagging
// destinations spill beyond the memory bound (empty: the temp directory).
func StartTee(src *os.File, dsts []*os.File, spillDir string) *Mover {
	return startTee(src, dsts, spillDir, false)
}

// StartTeeAhead is StartTee for destinations whose readers may not have
// started yet: it reads src to its end even while no destination takes a
// byte, keeping what they have not read in their backlogs (memory, then
// the spill file). A consumer that runs only after its producer has exited
// (`stage b after a` reading a) gets its input this way; through a plain
// pipe the producer would block for good once the pipe was full.
func StartTeeAhead(src *os.File, dsts []*os.File, spillDir string) *Mover {
	return startTee(src, dsts, spillDir, true)
}

func startTee(src *os.File, dsts []*os.File, spillDir string, readAhead bool) *Mover {
	m, err := newMover()
	if err != nil {
		closeFile(src)
		for _, d := range dsts {
			closeFile(d)
		}
		return failedMover(err)
	}
	if spillDir == "" {
		spillDir = os.TempDir()
	}
	t := &teeRun{m: m, src: src, spillDir: spillDir, devnull: -1, readAhead: readAhead}
	for _, f := range dsts {
		t.dsts = append(t.dsts, &teeDst{f: f, spill: -1})
	}
	go m.run(t.run)
	return m
}

type teeRun struct {
	m        *Mover
	src      *os.File
	sfd      int
	srcPipe  bool
	srcEOF   bool
	srcReady bool // poll said src is readable (used for sources that aren't pipes)
	srcHup   bool // poll said the source pipe has no writer left
	dsts     []*teeDst
	scratch  []byte
	devnull  int
	spillDir string
	stop     *fdio.Stop
	// readAhead: keep reading while every destination has stopped
	// (StartTeeAhead).
	readAhead bool

	// Reused from round to round, so that moving a chunk allocates nothing.
	teeable []*teeDst
	pfd     []unix.PollFd
	polled  []*teeDst
}

func (t *teeRun) run() error {
	defer t.cleanup()
	var err error
	if t.sfd, err = fdio.FD(t.src); err != nil {
		return fmt.Errorf("tee source: %w", err)
	}
	t.srcPipe = fdio.KindOf(t.sfd) == fdio.KindPipe
	t.stop = &t.m.ctl
	for i, d := range t.dsts {
		e, err := openEnd(d.f, true)
		if e == nil {
			closeFile(d.f)
			d.gone = true
			return fmt.Errorf("tee output %d: %w", i+1, err)
		}
		d.e = e
		if err != nil { // its reader is already gone
			t.drop(d)
			continue
		}
		d.pipe = t.srcPipe && e.kind == fdio.KindPipe
		if d.pipe {
			c, err := unix.FcntlInt(uintptr(e.fd), unix.F_GETPIPE_SZ, 0)
			if err != nil {
				return fmt.Errorf("tee output %d: %w", i+1, err)
			}
			d.cap = c
		}
	}
	if t.srcPipe {
		if t.devnull, err = unix.Open("/dev/null", unix.O_WRONLY|unix.O_CLOEXEC, 0); err != nil {
			return fmt.Errorf("tee: open /dev/null: %w", err)
		}
	}
	bp := fdio.Buffer()
	defer fdio.PutBuffer(bp)
	t.scratch = *bp
	return t.loop()
}

// loop runs the fan-out until the stream is delivered or every reader has
// gone: flush backlogs, move new bytes, and when nothing moved, poll.
func (t *teeRun) loop() error {
	for {
		if t.live() == 0 {
			return nil
		}
		if t.stop.Requested() {
			return fdio.ErrStopped
		}
		progress := false
		for _, d := range t.dsts {
			if !d.gone && !d.full && d.backlog() > 0 {
				p, err := t.flush(d)
				if err != nil {
					return err
				}
				progress = progress || p
			}
		}
		if t.srcEOF {
			for _, d := range t.dsts {
				if !d.gone && d.backlog() == 0 {
					t.finish(d)
				}
			}
		} else {
			p, err := t.feed()
			if err != nil {
				return err
			}
			progress = progress || p
		}
		if !progress && t.live() > 0 {
			if err := t.wait(); err != nil {
				return err
			}
		}
	}
}

// feed moves what the source has into the destinations: by tee(2) into the
// pipes that have caught up, and through the buffer to the others, unless
// a destination sets the pace and can't take more now.
func (t *teeRun) feed() (bool, error) {
	now := time.Now()
	if t.paced(now) || !t.anyLive(now) {
		return false, nil
	}
	for _, d := range t.dsts {
		d.got = 0
	}
	n := len(t.scratch)
	if t.srcPipe {
		avail, err := unix.IoctlGetInt(t.sfd, unix.TIOCINQ) // FIONREAD
		if err != nil {
			return false, fmt.Errorf("tee source: %w", err)
		}
		if avail == 0 {
			if t.srcHup {
				t.srcEOF = true
				return true, nil
			}
			return false, nil
		}
		n = min(n, avail)
		// Lockstep: tee no more than every caught-up pipe has room for,
		// so none of them falls behind by a partial tee.
		teeable := t.teeable[:0]
		for _, d := range t.dsts {
			if d.gone || !d.pipe || d.full || d.backlog() > 0 {
				continue
			}
			queued, err := unix.IoctlGetInt(d.e.fd, unix.TIOCINQ)
			if err != nil {
				return false, fmt.Errorf("tee output: %w", err)
			}
			if free := d.cap - queued; free > 0 {
				n = min(n, free)
				teeable = append(teeable, d)
			} else {
				t.markFull(d, now)
			}
		}
		t.teeable = teeable
		if t.paced(now) {
			return false, nil
		}
		if len(teeable) > 0 {
			return t.teeRound(teeable, n, now)
		}
	} else if !t.srcReady {
		return false, nil
	}
	got, err := readSome(t.sfd, t.scratch[:n])
	t.srcReady = false
	if err == unix.EIO && fdio.KindOf(t.sfd) == fdio.KindChar {
		// A terminal that hung up: its input has ended.
		got, err = 0, nil
	}
	if err != nil {
		return false, fmt.Errorf("tee source: %w", err)
	}
	if got == 0 {
		t.srcEOF = true
		return true, nil
	}
	t.stop.Add(int64(got))
	for _, d := range t.dsts {
		if !d.gone {
			if err := t.deliver(d, t.scratch[:got]); err != nil {
				return false, err
			}
		}
	}
	return true, nil
}

// stopped: d has been full for teeStall without taking a byte.
func (d *teeDst) stopped(now time.Time) bool {
	return d.full && now.Sub(d.fullSince) >= teeStall
}

// pacing: the source must wait for d. A caught-up pipe that is full holds
// the tee (lockstep); a destination catching up on a large backlog holds
// it until it is done; neither once it has stopped.
func (d *teeDst) pacing(now time.Time, tee bool) bool {
	if d.gone || d.stopped(now) {
		return false
	}
	if d.catchingUp {
		return true
	}
	return tee && d.full && d.backlog() == 0
}

func (t *teeRun) paced(now time.Time) bool {
	for _, d := range t.dsts {
		if d.pacing(now, d.pipe) {
			return true
		}
	}
	return false
}

// anyLive: some destination is still taking bytes (reading ahead for
// destinations that have all stopped would only fill the spill files,
// which is what readAhead asks for).
func (t *teeRun) anyLive(now time.Time) bool {
	if t.readAhead {
		return true
	}
	for _, d := range t.dsts {
		if !d.gone && !d.stopped(now) {
			return true
		}
	}
	return false
}

func (t *teeRun) markFull(d *teeDst, now time.Time) {
	if !d.full {
		d.full = true
		d.fullSince = now
	}
}

// teeRound moves n bytes from the source pipe into the caught-up pipes.
// Every one but the last gets them by tee(2). When every live destination
// is among them, the last gets them by splice(2), which also takes them
// off the source (one call instead of a tee and a drop), but no more than
// the others took, so that none needs bytes that are gone.
func (t *teeRun) teeRound(teeable []*teeDst, n int, now time.Time) (bool, error) {
	last := teeable[len(teeable)-1]
	others := teeable[:len(teeable)-1]
	most, least, live := 0, n, 1
	for _, d := range others {
		got, err := unix.Tee(t.sfd, d.e.fd, n, unix.SPLICE_F_NONBLOCK)
		switch err {
		case nil:
		case unix.EAGAIN:
			t.markFull(d, now)
		case unix.EPIPE:
			t.drop(d)
		default:
			return false, fmt.Errorf("tee: %w", err)
		}
		d.got = max(int(got), 0) // -1 on error
		most = max(most, d.got)
		if !d.gone {
			least = min(least, d.got)
			live++
		}
	}
	taken := 0
	call, verb := unix.Tee, "tee"
	if live == t.live() && least > 0 {
		call, verb = spliceNoOffsets, "splice"
		n = least
	}
	got, err := call(t.sfd, last.e.fd, n, unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
	switch err {
	case nil:
	case unix.EAGAIN:
		t.markFull(last, now)
	case unix.EPIPE:
		t.drop(last)
	default:
		return false, fmt.Errorf("tee: %s: %w", verb, err)
	}
	last.got = max(int(got), 0)
	most = max(most, last.got)
	if verb == "splice" {
		taken = last.got
	}
	if most == 0 {
		return false, nil
	}
	return true, t.consume(most, taken)
}

// spliceNoOffsets is splice(2) between two pipes, shaped like tee(2).
func spliceNoOffsets(in, out, n int, flags int) (int64, error) {
	return unix.Splice(in, nil, out, nil, n, flags)
}

// consume finishes a round in which some destination got m bytes: the
// first taken of them are already off the source. A destination that got
// fewer than m is given the rest through the buffer; the others' bytes
// are dropped from the source.
func (t *teeRun) consume(m, taken int) error {
	t.stop.Add(int64(m))
	short := false
	for _, d := range t.dsts {
		short = short || (!d.gone && d.got < m)
	}
	left := m - taken
	if !short {
		for left > 0 {
			n, err := unix.Splice(t.sfd, nil, t.devnull, nil, left, unix.SPLICE_F_MOVE)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n == 0 {
				return fmt.Errorf("tee: drop from source: %w", orEOF(err))
			}
			left -= int(n)
		}
		return nil
	}
	for done := 0; done < left; {
		n, err := readSome(t.sfd, t.scratch[done:left])
		if err != nil || n == 0 {
			return fmt.Errorf("tee source: %w", orEOF(err))
		}
		done += n
	}
	// scratch holds stream bytes [taken, m); every destination that needs
	// some got at least taken (see teeRound).
	for _, d := range t.dsts {
		if !d.gone && d.got < m {
			if err := t.deliver(d, t.scratch[d.got-taken:left]); err != nil {
				return err
			}
		}
	}
	return nil
}

// deliver gives p to d: straight away as far as d takes it, the rest to
// its backlog.
func (t *teeRun) deliver(d *teeDst, p []byte) error {
	if d.backlog() == 0 && !d.full {
		n, err := t.write(d, p)
		if err != nil || d.gone {
			return err
		}
		p = p[n:]
	}
	if len(p) == 0 {
		return nil
	}
	return t.enqueue(d, p)
}

// write writes what d takes of p now. A full destination is marked full, a
// destination whose reader has gone is dropped: both return no error.
func (t *teeRun) write(d *teeDst, p []byte) (int, error) {
	for {
		var n int
		var err error
		if d.e.kind == fdio.KindSocket {
			n, err = unix.SendmsgN(d.e.fd, p, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		} else {
			n, err = unix.Write(d.e.fd, p)
		}
		switch err {
		case nil:
			return n, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			t.markFull(d, time.Now())
			return 0, nil
		case unix.EPIPE, unix.ECONNRESET:
			t.drop(d)
			return 0, nil
		}
		return 0, fmt.Errorf("tee: write: %w", err)
	}
}

// wait polls for the next thing that can move: the source (when nothing
// holds it back), destinations that are full or have a backlog, a reader
// going away, a full destination's time to count as stopped, or Close.
func (t *teeRun) wait() error {
	now := time.Now()
	timeout := -1
	pfd := append(t.pfd[:0], unix.PollFd{Fd: int32(t.stop.FD), Events: unix.POLLIN})
	srcAt := -1
	if !t.srcEOF && !t.paced(now) && t.anyLive(now) {
		srcAt = len(pfd)
		pfd = append(pfd, unix.PollFd{Fd: int32(t.sfd), Events: unix.POLLIN})
	}
	first := len(pfd)
	polled := t.polled[:0]
	for _, d := range t.dsts {
		if d.gone {
			continue
		}
		// Events 0 still reports POLLERR: the reader has gone.
		ev := int16(0)
		if d.full {
			ev = unix.POLLOUT
			if !d.stopped(now) {
				ms := int((d.fullSince.Add(teeStall).Sub(now) + time.Millisecond - 1) / time.Millisecond)
				if timeout < 0 || ms < timeout {
					timeout = max(ms, 1)
				}
			}
		}
		pfd = append(pfd, unix.PollFd{Fd: int32(d.e.fd), Events: ev})
		polled = append(polled, d)
	}
	t.pfd, t.polled = pfd, polled
	for {
		_, err := unix.Poll(pfd, timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("tee: poll: %w", err)
		}
		break
	}
	if pfd[0].Revents != 0 {
		return fdio.ErrStopped
	}
	if srcAt >= 0 {
		r := pfd[srcAt].Revents
		t.srcReady = r != 0
		t.srcHup = t.srcHup || r&unix.POLLHUP != 0
	}
	for i, d := range polled {
		r := pfd[first+i].Revents
		if r&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 {
			t.drop(d)
		} else if r&unix.POLLOUT != 0 {
			d.full = false
		}
	}
	return nil
}

func (t *teeRun) live() int {
	n := 0
	for _, d := range t.dsts {
		if !d.gone {
			n++
		}
	}
	return n
}

// drop lets go of a destination whose reader has gone: its backlog is of
// no use to anyone.
func (t *teeRun) drop(d *teeDst) {
	t.finish(d)
}

// finish closes a destination (delivered, or gone) and frees its backlog.
func (t *teeRun) finish(d *teeDst) {
	if d.gone {
		return
	}
	d.gone = true
	d.e.close()
	d.ring = nil
	d.rlen = 0
	if d.spill >= 0 {
		unix.Close(d.spill)
		d.spill = -1
	}
	d.sr, d.sw = 0, 0
}

// cleanup closes everything still open: the source (so that its producer,
// if still writing, sees EPIPE), the destinations and /dev/null.
func (t *teeRun) cleanup() {
	for _, d := range t.dsts {
		if d.e == nil {
			if !d.gone {
				closeFile(d.f)
			}
			d.gone = true
			continue
		}
		t.finish(d)
	}
	closeFile(t.src)
	if t.devnull >= 0 {
		unix.Close(t.devnull)
	}
}

// readSome is one read(2), retried on EINTR.
func readSome(fd int, p []byte) (int, error) {
	for {
		n, err := unix.Read(fd, p)
		if err == unix.EINTR {
			continue
		}
		return n, err
	}
}

// orEOF names an unexpected end of data when a call returned 0 and no error.
func orEOF(err error) error {
	if err == nil {
		return fmt.Errorf("unexpected end of data")
	}
	return err
}
