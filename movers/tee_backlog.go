package movers

// The backlog of a fan-out destination that fell behind: a memory ring up
// to teeMemBound, then an unnamed spill file (see tee.go for when a
// destination gets one and how it rejoins the tee).

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// teeDst is one destination of a fan-out and its backlog.
type teeDst struct {
	f    *os.File
	e    *end
	pipe bool // takes tee(2)
	gone bool // reader went away, or all was delivered and it was closed
	full bool // the last write or tee found it full: wait for POLLOUT
	got  int  // bytes tee'd into it in the current round
	cap  int  // pipe buffer size, for how much a tee can put in

	fullSince  time.Time // when it was last found full (valid while full)
	catchingUp bool      // its backlog reached teeSlack: it paces until empty

	ring        []byte // memory backlog
	rhead, rlen int
	spill       int   // spill file, or -1
	sr, sw      int64 // spill offsets: read (delivered up to) and write
}

func (d *teeDst) backlog() int64 { return int64(d.rlen) + d.sw - d.sr }

// enqueue appends p to d's backlog: into its memory ring while nothing is
// waiting in its spill file, the rest into the spill file.
func (t *teeRun) enqueue(d *teeDst, p []byte) error {
	if d.backlog()+int64(len(p)) >= teeSlack {
		d.catchingUp = true
	}
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
	d.catchingUp = false
	return progress, nil
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
