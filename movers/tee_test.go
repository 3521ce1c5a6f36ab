package movers

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/fdio"
	"github.com/ipcflow/ipcflow/internal/testkit"
)

// teeTo starts a Tee from a producer script to n `cat` consumers writing
// into files, and returns what each got (after the Tee and the processes
// are done).
func teeTo(t *testing.T, producer string, consumers []string, spillDir string) ([][]byte, *Mover) {
	got, m, _ := teeToErr(t, producer, consumers, spillDir)
	return got, m
}

// teeToErr is teeTo that also returns how the producer ended.
func teeToErr(t *testing.T, producer string, consumers []string, spillDir string) ([][]byte, *Mover, error) {
	t.Helper()
	r, w := testkit.Pipe(t)
	prod := testkit.Start(t, producer, nil, w)
	var dsts []*os.File
	var cons []interface{ Wait() error }
	var outs []func() []byte
	for _, c := range consumers {
		cr, cw := testkit.Pipe(t)
		o, res := testkit.FileCollector(t)
		cons = append(cons, testkit.Start(t, c, cr, o))
		dsts = append(dsts, cw)
		outs = append(outs, res)
	}
	m := StartTee(r, dsts, spillDir)
	if err := m.Wait(); err != nil {
		t.Fatalf("Tee: %v", err)
	}
	perr := prod.Wait()
	if perr != nil && testkit.Signaled(perr) != syscall.SIGPIPE {
		t.Errorf("producer: %v", perr)
	}
	var got [][]byte
	for i, c := range cons {
		c.Wait()
		got = append(got, outs[i]())
	}
	return got, m, perr
}

func TestTeeCarriesBytesUnchanged(t *testing.T) {
	before := testkit.Warm(t)
	for name, in := range testkit.Inputs() {
		t.Run(name, func(t *testing.T) {
			f := testkit.WriteTemp(t, "in", in)
			got, _ := teeTo(t, "cat "+f, []string{"cat", "cat", "cat"}, t.TempDir())
			for i, g := range got {
				if !bytes.Equal(g, in) {
					t.Errorf("output %d: %d bytes (sha %s), want %d (sha %s)", i, len(g), testkit.Sha(g), len(in), testkit.Sha(in))
				}
			}
		})
	}
	testkit.NoLeak(t, before)
}

// 64 MiB to three consumers, checked by hash against the input.
func TestTeeLargeByHash(t *testing.T) {
	before := testkit.Warm(t)
	in := testkit.WriteTemp(t, "big", nil)
	want := testkit.Bash(t, fmt.Sprintf("head -c 67108864 /dev/urandom | tee %s | sha256sum", in))
	got, _ := teeTo(t, "cat "+in, []string{"sha256sum", "cat | sha256sum", "sha256sum"}, t.TempDir())
	for i, g := range got {
		if !bytes.Equal(g, want) {
			t.Errorf("output %d: %s, want %s", i, g, want)
		}
	}
	testkit.NoLeak(t, before)
}

// Three consumers of different speeds: one fast, one slow, one that stops
// after 10 bytes. The others still get everything, and the slow one does
// not hold up the fast one (it spills past the memory bound instead).
func TestTeeDifferentSpeeds(t *testing.T) {
	before := testkit.Warm(t)
	spill := t.TempDir()
	in := testkit.WriteTemp(t, "in", nil)
	want := testkit.Bash(t, fmt.Sprintf("seq 1 2000000 | tee %s", in)) // 15 MiB
	gate := filepath.Join(t.TempDir(), "gate")
	got, m := teeTo(t, "cat "+in, []string{
		"cat; touch " + gate,
		"head -c 10",
		// Reads nothing until the fast one has had everything: its
		// whole backlog (15 MiB) waits in the Tee, most of it spilled.
		"until [ -e " + gate + " ]; do sleep 0.02; done; cat",
	}, spill)
	if !bytes.Equal(got[0], want) {
		t.Errorf("fast consumer: %d bytes, want %d", len(got[0]), len(want))
	}
	if string(got[1]) != string(want[:10]) {
		t.Errorf("head: %q", got[1])
	}
	if !bytes.Equal(got[2], want) {
		t.Errorf("slow consumer: %d bytes, want %d", len(got[2]), len(want))
	}
	// Everything beyond the memory ring and the two pipes (cat's input
	// and its own buffer) went through the spill file.
	if s, min := m.spill.Load(), int64(len(want)-teeMemBound-1<<20); s < min {
		t.Errorf("spilled %d bytes, want at least %d", s, min)
	}
	if ents, _ := os.ReadDir(spill); len(ents) != 0 {
		t.Errorf("spill directory not empty: %v", ents)
	}
	testkit.NoLeak(t, before)
}

// The diamond: src -> {sort, cat} -> paste, where paste reads sort's output
// first. sort reads everything before it writes, so cat's output backs up
// and cat stops reading; the Tee must keep feeding sort (buffering cat's
// share) or the flow deadlocks. 400,000 lines (2.6 MiB) per branch also
// takes cat's backlog through the memory ring. Compared with bash.
func TestTeeDiamond(t *testing.T) {
	before := testkit.Warm(t)
	in := testkit.WriteTemp(t, "in", nil)
	testkit.Bash(t, fmt.Sprintf("seq 1 400000 | shuf --random-source=<(yes) > %s; printf 'no newline' >> %s", in, in))
	want := testkit.Bash(t, fmt.Sprintf("paste <(sort %s) <(cat %s)", in, in))
	got, ok := diamond(t, in, 60*time.Second, func(src *os.File, dsts []*os.File) func() {
		m := StartTee(src, dsts, t.TempDir())
		return func() {
			if err := m.Wait(); err != nil {
				t.Error(err)
			}
		}
	})
	if !ok {
		t.Fatal("diamond deadlocked")
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes (sha %s), want %d (sha %s)", len(got), testkit.Sha(got), len(want), testkit.Sha(want))
	}
	testkit.NoLeak(t, before)
}

// The negative control: with a tee that waits for its slowest reader (as
// tee(1) does), the same diamond deadlocks, so TestTeeDiamond proves
// something.
func TestTeeDiamondControl(t *testing.T) {
	in := testkit.WriteTemp(t, "in", nil)
	testkit.Bash(t, fmt.Sprintf("seq 1 400000 > %s", in))
	_, ok := diamond(t, in, 2*time.Second, func(src *os.File, dsts []*os.File) func() {
		ws := make([]io.Writer, len(dsts))
		for i, d := range dsts {
			ws[i] = d
		}
		done := make(chan struct{})
		go func() {
			io.Copy(io.MultiWriter(ws...), src)
			src.Close()
			for _, d := range dsts {
				d.Close()
			}
			close(done)
		}()
		return func() { <-done }
	})
	if ok {
		t.Fatal("a blocking tee completed the diamond: the test can't tell")
	}
}

// diamond runs cat IN | tee -> {sort, cat} -> paste with the given tee
// and returns paste's output, or false if it did not finish in time (then
// every process is killed).
func diamond(t *testing.T, in string, timeout time.Duration, tee func(src *os.File, dsts []*os.File) (wait func())) ([]byte, bool) {
	r, w := testkit.Pipe(t)
	sortIn, teeSort := testkit.Pipe(t)
	catIn, teeCat := testkit.Pipe(t)
	sortOut, sortW := testkit.Pipe(t)
	catOut, catW := testkit.Pipe(t)
	out, res := testkit.FileCollector(t)
	procs := []*exec.Cmd{
		testkit.Start(t, "exec cat "+in, nil, w),
		testkit.Start(t, "exec sort", sortIn, sortW),
		testkit.Start(t, "exec cat", catIn, catW),
		testkit.Start(t, "exec paste /dev/fd/3 /dev/fd/4", nil, out, sortOut, catOut),
	}
	wait := tee(r, []*os.File{teeSort, teeCat})
	done := make(chan struct{})
	go func() {
		for _, p := range procs {
			if err := p.Wait(); err != nil {
				t.Logf("%s: %v", p.Args, err)
			}
		}
		close(done)
	}()
	select {
	case <-done:
		wait()
		return res(), true
	case <-time.After(timeout):
		for _, p := range procs {
			p.Process.Kill()
		}
		<-done
		wait()
		return nil, false
	}
}

// Every reader gone: the Tee closes its source, so the producer gets
// SIGPIPE, and the Tee ends without error.
func TestTeeAllReadersGone(t *testing.T) {
	before := testkit.Warm(t)
	got, _, perr := teeToErr(t, "yes", []string{"head -c 4", "head -c 6"}, t.TempDir())
	if string(got[0]) != "y\ny\n" || string(got[1]) != "y\ny\ny\n" {
		t.Errorf("got %q", got)
	}
	if sig := testkit.Signaled(perr); sig != syscall.SIGPIPE {
		t.Errorf("producer ended by %v, want SIGPIPE", sig)
	}
	testkit.NoLeak(t, before)
}

// A source that is not a pipe (a file, as ipcflow's stdin may be) and
// destinations that are not pipes (a file, a socket, as its stdout may be).
func TestTeeNonPipes(t *testing.T) {
	before := testkit.Warm(t)
	in := bytes.Repeat(testkit.Inputs()["binary"], 10) // 3 MiB: many rounds
	for _, srcKind := range []string{"file", "pipe"} {
		t.Run(srcKind, func(t *testing.T) {
			src := testkit.FileFeeder(t, in)
			if srcKind == "pipe" {
				src.Close()
				src = testkit.PipeFeeder(t, in)
			}
			fdst, fres := testkit.FileCollector(t)
			pdst, pres := testkit.PipeCollector(t)
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			sdst := os.NewFile(uintptr(fds[0]), "s0")
			sres := testkit.ReadAll(os.NewFile(uintptr(fds[1]), "s1"))
			m := StartTee(src, []*os.File{fdst, pdst, sdst}, t.TempDir())
			if err := m.Wait(); err != nil {
				t.Fatal(err)
			}
			if g := fres(); !bytes.Equal(g, in) {
				t.Errorf("file output: %d bytes, want %d", len(g), len(in))
			}
			if g := pres(); !bytes.Equal(g, in) {
				t.Errorf("pipe output: %d bytes, want %d", len(g), len(in))
			}
			if g := <-sres; !bytes.Equal(g, in) {
				t.Errorf("socket output: %d bytes, want %d", len(g), len(in))
			}
		})
	}
	testkit.NoLeak(t, before)
}

// Close stops a running Tee (its readers never read) and closes every fd.
func TestTeeClose(t *testing.T) {
	before := testkit.Warm(t)
	r, w := testkit.Pipe(t)
	prod := testkit.Start(t, "yes", nil, w)
	var held []*os.File
	var dsts []*os.File
	for range 2 {
		cr, cw := testkit.Pipe(t)
		held = append(held, cr)
		dsts = append(dsts, cw)
	}
	m := StartTee(r, dsts, t.TempDir())
	time.Sleep(100 * time.Millisecond) // let it fill the pipes and start a backlog
	m.Close()
	if err := m.Wait(); err != nil {
		t.Fatalf("Wait after Close: %v", err)
	}
	if sig := testkit.Signaled(prod.Wait()); sig != syscall.SIGPIPE {
		t.Errorf("producer ended by %v, want SIGPIPE", sig)
	}
	for _, h := range held {
		h.Close()
	}
	testkit.NoLeak(t, before)
}

// Readers that read in random sizes, pause at random (some pauses longer
// than teeStall, so they are left behind and catch up again), and one that
// stops early: every reader still gets exactly the stream (or its prefix).
// The memory bound is shrunk so the spill file is used, refilled and
// emptied many times. Seeds make a failure repeatable.
func TestTeeRandomReaders(t *testing.T) {
	before := testkit.Warm(t)
	defer func(m int, s int64) { teeMemBound, teeSlack = m, s }(teeMemBound, teeSlack)
	teeMemBound, teeSlack = 256<<10, 64<<10
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			stream := make([]byte, 12<<20+rng.IntN(1<<20))
			for i := range stream {
				stream[i] = byte(rng.Uint32())
			}
			r, w := testkit.Pipe(t)
			go func() {
				for p := stream; len(p) > 0; {
					n := min(len(p), 1+rng.IntN(300<<10))
					if _, err := w.Write(p[:n]); err != nil {
						break
					}
					p = p[n:]
				}
				w.Close()
			}()
			const readers = 4
			stopAt := 1 + int(seed)*777_777 // reader 0 stops after this many bytes
			var dsts []*os.File
			results := make([]chan []byte, readers)
			for i := range readers {
				cr, cw := testkit.Pipe(t)
				dsts = append(dsts, cw)
				results[i] = make(chan []byte, 1)
				prng := rand.New(rand.NewPCG(seed, uint64(i)+10))
				go func() {
					var got []byte
					buf := make([]byte, 256<<10)
					for {
						if i == 0 && len(got) >= stopAt {
							break
						}
						if prng.IntN(40) == 0 {
							time.Sleep(time.Duration(prng.IntN(60)) * time.Millisecond)
						}
						n, _ := cr.Read(buf[:1+prng.IntN(len(buf))])
						if n == 0 {
							break
						}
						got = append(got, buf[:n]...)
					}
					cr.Close()
					results[i] <- got
				}()
			}
			m := StartTee(r, dsts, t.TempDir())
			if err := m.Wait(); err != nil {
				t.Fatal(err)
			}
			for i := range readers {
				got := <-results[i]
				want := stream
				if i == 0 {
					want = stream[:min(len(got), len(stream))]
					if len(got) < stopAt {
						t.Errorf("reader 0 got %d bytes, fewer than %d", len(got), stopAt)
					}
				}
				if !bytes.Equal(got, want) {
					t.Errorf("reader %d: %d bytes (sha %s), want %d (sha %s)", i, len(got), testkit.Sha(got)[:12], len(want), testkit.Sha(want)[:12])
				}
			}
			t.Logf("spilled %d bytes", m.spill.Load())
		})
	}
	testkit.NoLeak(t, before)
}

// ipcflow's stdin on a terminal as a fan-out's source: what is typed goes
// to every reader line by line, and Ctrl-D (or the terminal hanging up)
// ends the stream.
func TestTeeFromTerminal(t *testing.T) {
	for _, end := range []string{"ctrl-d", "hangup"} {
		t.Run(end, func(t *testing.T) {
			master, tty := testkit.Pty(t)
			defer master.Close()
			fd, _ := fdio.FD(tty)
			tio, _ := unix.IoctlGetTermios(fd, unix.TCGETS)
			tio.Lflag |= unix.ICANON // line by line, Ctrl-D is end of file
			unix.IoctlSetTermios(fd, unix.TCSETS, tio)
			d1, res1 := testkit.PipeCollector(t)
			d2, res2 := testkit.PipeCollector(t)
			m := StartTee(tty, []*os.File{d1, d2}, t.TempDir())
			// A hangup discards what is unread, so only Ctrl-D is
			// checked with typed lines.
			want := ""
			if end == "ctrl-d" {
				want = "typed line\nanother\n"
				master.Write([]byte(want + "\x04"))
			} else {
				master.Close()
			}
			if err := m.Wait(); err != nil {
				t.Fatal(err)
			}
			for i, g := range [][]byte{res1(), res2()} {
				if string(g) != want {
					t.Errorf("reader %d got %q, want %q", i, g, want)
				}
			}
		})
	}
}

// A spill file has no name from the start (O_TMPFILE, or unlinked at
// once): nothing of it can outlive the process, whatever happens.
func TestSpillFileHasNoName(t *testing.T) {
	dir := t.TempDir()
	fd, err := spillFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	if st.Nlink != 0 || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&0o777 != 0o600 {
		t.Errorf("spill file: nlink %d, mode %o; want an unnamed regular file, 0600", st.Nlink, st.Mode)
	}
	testkit.EmptyDir(t, dir)
	if _, err := spillFile(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "spill file") {
		t.Errorf("spill file in a missing directory: %v", err)
	}
}

// Every fd a mover opens (its eventfd, /dev/null, reopened outputs, spill
// files) is close-on-exec: a stage started while movers run sees only its
// own fds.
func TestMoverFDsNotInherited(t *testing.T) {
	childFDs := func() string {
		out, err := exec.Command("ls", "/proc/self/fd").Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(strings.Fields(string(out)), " ")
	}
	want := childFDs() // 0 1 2 and ls's own directory fd
	defer func(m int) { teeMemBound = m }(teeMemBound)
	teeMemBound = 64 << 10
	r, w := testkit.Pipe(t)
	held, dst := testkit.Pipe(t) // never read: its backlog spills
	fast, fres := testkit.PipeCollector(t)
	m := StartTee(r, []*os.File{dst, fast}, t.TempDir())
	defer held.Close()
	if _, err := w.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	for m.spill.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	jr, jw := testkit.Pipe(t) // a join waiting on an idle input, into our stderr
	j := StartJoin([]*os.File{jr}, os.Stderr)
	if got := childFDs(); got != want {
		t.Errorf("a child started while movers run sees fds %s, want %s", got, want)
	}
	w.Close()
	held.Close()
	m.Wait()
	fres()
	jw.Close()
	j.Wait()
}
