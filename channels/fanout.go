package channels

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Fan-out: every destination gets the whole stream of the source, in order.
//
// While the destinations keep up, bytes never enter ipcflow: tee(2) puts a
// reference to the source pipe's pages into each destination pipe and a
// splice(2) into /dev/null then drops them from the source. A destination
// that falls behind must not hold up the others: if it did, the classic
// diamond `src -> {sort, cat} -> paste` would deadlock (paste waits for
// sort's output, sort for all of src, src for the tee, the tee for cat, cat
// for paste). So the tee moves at the pace of its fastest destination, and
// a destination that can't take the bytes others took gets them in a
// backlog of its own:
//
//   - up to teeMemBound (4 MiB) in memory, a ring allocated the first time
//     that destination falls behind;
//   - beyond that, in a spill file in spillDir, made with O_TMPFILE (or
//     unlinked at once where that is unsupported), so it has no name that
//     could outlive the run; it is emptied whenever the destination catches
//     up, and closed with it;
//   - a destination with a backlog is fed from it (write(2), when poll(2)
//     says it can take more) until it has caught up, then rejoins the tee.
//
// The source is read only while some destination is taking data, so when
// every destination is behind the producer waits, as with a pipe. A
// destination whose reader has gone is dropped and its backlog discarded;
// when all have gone the source is closed, so the producer sees EPIPE. At
// the source's end of file each destination is closed as soon as its
// backlog is delivered (the caught-up ones at once: sort must see its end
// of input while cat's backlog still drains).
//
// A source that is not a pipe (ipcflow's own stdin: a terminal or a file)
// can't be tee'd: it is read into the buffer and written to each
// destination, with the same backlogs. So is a destination that is not a
// pipe (ipcflow's stdout on a terminal).

// teeMemBound is how much of a lagging destination's backlog stays in
// memory before the rest goes to its spill file.
const teeMemBound = 4 << 20

// StartTee starts a fan-out from src to every dst. The Mover owns src and
// every dst (see Mover for ipcflow's own stdio). spillDir is where lagging
// destinations spill beyond the memory bound (empty: the temp directory).
func StartTee(src *os.File, dsts []*os.File, spillDir string) *Mover {
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
	t := &teeRun{m: m, src: src, spillDir: spillDir, devnull: -1}
	for _, f := range dsts {
		t.dsts = append(t.dsts, &teeDst{f: f, spill: -1})
	}
	go m.run(t.run)
	return m
}

// teeDst is one destination of a fan-out and its backlog.
type teeDst struct {
	f    *os.File
	e    *end
	pipe bool // takes tee(2)
	gone bool // reader went away, or all was delivered and it was closed
	full bool // the last write or tee found it full: wait for POLLOUT
	got  int  // bytes tee'd into it in the current round

	ring        []byte // memory backlog
	rhead, rlen int
	spill       int   // spill file, or -1
	sr, sw      int64 // spill offsets: read (delivered up to) and write
}

func (d *teeDst) backlog() int64 { return int64(d.rlen) + d.sw - d.sr }

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
	stop     int
}

func (t *teeRun) run() error {
	defer t.cleanup()
	var err error
	if t.sfd, err = fdOf(t.src); err != nil {
		return fmt.Errorf("tee source: %w", err)
	}
	t.srcPipe = kindOf(t.sfd) == kindPipe
	t.stop = t.m.stopFD()
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
		d.pipe = t.srcPipe && e.kind == kindPipe
	}
	if t.srcPipe {
		if t.devnull, err = unix.Open("/dev/null", unix.O_WRONLY|unix.O_CLOEXEC, 0); err != nil {
			return fmt.Errorf("tee: open /dev/null: %w", err)
		}
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
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
// pipes that have caught up, and through the buffer to the others.
func (t *teeRun) feed() (bool, error) {
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
		most := 0
		for _, d := range t.dsts {
			if d.gone || !d.pipe || d.full || d.backlog() > 0 {
				continue
			}
			got, err := unix.Tee(t.sfd, d.e.fd, n, unix.SPLICE_F_NONBLOCK)
			switch err {
			case nil:
				d.got = int(got)
				most = max(most, d.got)
			case unix.EAGAIN:
				d.full = true
			case unix.EPIPE:
				t.drop(d)
			default:
				return false, fmt.Errorf("tee: %w", err)
			}
		}
		if most > 0 {
			return true, t.consume(most)
		}
		if !t.hungry() {
			return false, nil
		}
	} else if !t.srcReady || !t.hungry() {
		return false, nil
	}
	got, err := readSome(t.sfd, t.scratch[:n])
	t.srcReady = false
	if err != nil {
		return false, fmt.Errorf("tee source: %w", err)
	}
	if got == 0 {
		t.srcEOF = true
		return true, nil
	}
	t.m.bytes.Add(int64(got))
	for _, d := range t.dsts {
		if !d.gone {
			if err := t.deliver(d, t.scratch[:got]); err != nil {
				return false, err
			}
		}
	}
	return true, nil
}

// consume takes the m bytes some destination got by tee(2) off the source.
// A destination that got fewer is given the rest through the buffer.
func (t *teeRun) consume(m int) error {
	t.m.bytes.Add(int64(m))
	short := false
	for _, d := range t.dsts {
		short = short || (!d.gone && d.got < m)
	}
	if !short {
		for m > 0 {
			n, err := unix.Splice(t.sfd, nil, t.devnull, nil, m, unix.SPLICE_F_MOVE)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n == 0 {
				return fmt.Errorf("tee: drop from source: %w", orEOF(err))
			}
			m -= int(n)
		}
		return nil
	}
	for done := 0; done < m; {
		n, err := readSome(t.sfd, t.scratch[done:m])
		if err != nil || n == 0 {
			return fmt.Errorf("tee source: %w", orEOF(err))
		}
		done += n
	}
	for _, d := range t.dsts {
		if !d.gone && d.got < m {
			if err := t.deliver(d, t.scratch[d.got:m]); err != nil {
				return err
			}
		}
	}
	return nil
}

// hungry: some destination that can't take tee(2) has (almost) nothing
// queued, so it is worth reading the source into the buffer for it.
func (t *teeRun) hungry() bool {
	for _, d := range t.dsts {
		if !d.gone && !d.pipe && !d.full && d.backlog() < chunk {
			return true
		}
	}
	return false
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

// enqueue appends p to d's backlog: into its memory ring while nothing is
// waiting in its spill file, the rest into the spill file.
func (t *teeRun) enqueue(d *teeDst, p []byte) error {
	if d.sw == d.sr {
		if d.ring == nil {
			d.ring = make([]byte, teeMemBound)
		}
		for len(p) > 0 && d.rlen < len(d.ring) {
			tail := (d.rhead + d.rlen) % len(d.ring)
			end := len(d.ring)
			if tail < d.rhead {
				end = d.rhead
			}
			n := copy(d.ring[tail:end], p)
			d.rlen += n
			p = p[n:]
		}
	}
	if len(p) == 0 {
		return nil
	}
	if d.spill < 0 {
		fd, err := spillFile(t.spillDir)
		if err != nil {
			return err
		}
		d.spill = fd
	}
	for len(p) > 0 {
		n, err := unix.Pwrite(d.spill, p, d.sw)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("tee: write spill file in %s: %w", t.spillDir, err)
		}
		d.sw += int64(n)
		t.m.spill.Add(int64(n))
		p = p[n:]
	}
	return nil
}

// flush writes d's backlog until d is full or has caught up. It reports
// whether anything moved.
func (t *teeRun) flush(d *teeDst) (bool, error) {
	progress := false
	for d.backlog() > 0 {
		if d.rlen == 0 {
			// The ring is empty: refill it from the spill file.
			n, err := unix.Pread(d.spill, d.ring, d.sr)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n == 0 {
				return progress, fmt.Errorf("tee: read spill file: %w", orEOF(err))
			}
			d.rhead, d.rlen = 0, n
			d.sr += int64(n)
			if d.sr == d.sw {
				// All of it is in the ring: give the disk space back.
				unix.Ftruncate(d.spill, 0)
				d.sr, d.sw = 0, 0
			}
		}
		seg := d.ring[d.rhead:min(d.rhead+d.rlen, len(d.ring))]
		n, err := t.write(d, seg)
		if err != nil || d.gone {
			return progress, err
		}
		if n == 0 {
			return progress, nil
		}
		progress = true
		d.rhead = (d.rhead + n) % len(d.ring)
		d.rlen -= n
	}
	return progress, nil
}

// write writes what d takes of p now. A full destination is marked full, a
// destination whose reader has gone is dropped: both return no error.
func (t *teeRun) write(d *teeDst, p []byte) (int, error) {
	for {
		var n int
		var err error
		if d.e.kind == kindSocket {
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
			d.full = true
			return 0, nil
		case unix.EPIPE, unix.ECONNRESET:
			t.drop(d)
			return 0, nil
		}
		return 0, fmt.Errorf("tee: write: %w", err)
	}
}

// wait polls for the next thing that can move: the source (when some
// destination would take what it has), destinations that are full, a
// reader going away, or Close.
func (t *teeRun) wait() error {
	pfd := make([]unix.PollFd, 0, len(t.dsts)+2)
	pfd = append(pfd, unix.PollFd{Fd: int32(t.stop), Events: unix.POLLIN})
	srcAt := -1
	if !t.srcEOF && t.wantSource() {
		srcAt = len(pfd)
		pfd = append(pfd, unix.PollFd{Fd: int32(t.sfd), Events: unix.POLLIN})
	}
	first := len(pfd)
	var polled []*teeDst
	for _, d := range t.dsts {
		if d.gone {
			continue
		}
		// Events 0 still reports POLLERR: the reader has gone.
		ev := int16(0)
		if d.full {
			ev = unix.POLLOUT
		}
		pfd = append(pfd, unix.PollFd{Fd: int32(d.e.fd), Events: ev})
		polled = append(polled, d)
	}
	for {
		_, err := unix.Poll(pfd, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("tee: poll: %w", err)
		}
		break
	}
	if pfd[0].Revents != 0 {
		return errStopped
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

// wantSource: would bytes from the source go anywhere now?
func (t *teeRun) wantSource() bool {
	if t.hungry() {
		return true
	}
	if !t.srcPipe {
		return false
	}
	for _, d := range t.dsts {
		if !d.gone && d.pipe && !d.full && d.backlog() == 0 {
			return true
		}
	}
	return false
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

// spillFile makes an anonymous file in dir: O_TMPFILE where the file
// system has it, else a temporary name removed at once.
func spillFile(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC|unix.O_EXCL, 0o600)
	if err == nil {
		return fd, nil
	}
	f, err := os.CreateTemp(dir, "ipcflow-spill-")
	if err != nil {
		return -1, fmt.Errorf("tee: spill file: %w", err)
	}
	os.Remove(f.Name())
	nfd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		return -1, fmt.Errorf("tee: spill file: %w", err)
	}
	unix.CloseOnExec(nfd)
	return nfd, nil
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
