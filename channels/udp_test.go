package channels

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// udpLines makes n distinct lines: short ones that the sender packs many to
// a datagram, and long ones (up to 200 KB, as in the audit's repro) that it
// splits into several. Every line names its index, so a line glued from the
// parts of two lines is never equal to a line of the input.
func udpLines(n int) [][]byte {
	var lines [][]byte
	for i := range n {
		size := 20 + i%50
		switch i % 5 {
		case 1:
			size = 200_000
		case 3:
			size = udpPayload*2 + i%7 // pieces that end exactly at a datagram's end, or just after
		}
		l := fmt.Sprintf("line %06d ", i)
		l += strings.Repeat(string(rune('a'+i%26)), size-len(l)-1) + "\n"
		lines = append(lines, []byte(l))
	}
	return lines
}

// udpRun writes input into a udp channel and returns what the consumer's
// end delivers; pause holds the consumer back before it starts reading.
func udpRun(t *testing.T, input []byte, pause time.Duration) ([]byte, Stats) {
	t.Helper()
	ch, err := Open(testEnv(t), Spec{ID: "e1", Type: "socket", Options: Options{Socket: "udp"}, Readers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	w, r := ch.Writer(), ch.Reader(0)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.Write(input)
		w.Close()
	}()
	time.Sleep(pause)
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := ch.Wait(); err != nil {
		t.Fatal(err)
	}
	return got, ch.Stats()
}

// wholeLinesOnly fails unless every line of got is a line of input, in
// input order, each at most once.
func wholeLinesOnly(t *testing.T, got []byte, lines [][]byte) int {
	t.Helper()
	next, n := 0, 0
	for len(got) > 0 {
		end := bytes.IndexByte(got, '\n') + 1
		if end == 0 {
			end = len(got)
		}
		line := got[:end]
		got = got[end:]
		for next < len(lines) && !bytes.Equal(lines[next], line) {
			next++
		}
		if next == len(lines) {
			t.Fatalf("delivered line %d (%d bytes, starting %q) is not a whole line of the input, in order", n, len(line), line[:min(len(line), 20)])
		}
		next++
		n++
	}
	return n
}

// TestUDPLossDropsTornLinesWhole: datagrams dropped on purpose (the test
// hook stands for a full socket buffer) take whole lines with them. The
// consumer gets exactly the lines none of whose bytes was in a lost
// datagram: no line glued from two lines' parts, no cut line.
func TestUDPLossDropsTornLinesWhole(t *testing.T) {
	lines := udpLines(400)
	input := bytes.Join(lines, nil)
	// Which datagrams to lose: a few patterns, so that first, middle and
	// last pieces of long lines are lost, as well as packed short lines
	// and runs of datagrams.
	for _, drop := range []struct {
		name string
		lose func(seq uint64) bool
	}{
		{"every 7th", func(s uint64) bool { return s%7 == 3 }},
		{"every 3rd", func(s uint64) bool { return s%3 == 0 }},
		{"runs of 5", func(s uint64) bool { return s%23 < 5 }},
		{"the last ones", func(s uint64) bool { return s >= 300 }},
	} {
		t.Run(drop.name, func(t *testing.T) {
			var off int64
			var lost [][2]int64 // byte ranges of the input in lost datagrams
			udpDropHook = func(seq uint64, payload []byte) bool {
				a := off
				off += int64(len(payload))
				if drop.lose(seq) {
					if len(payload) > 0 { // not the EOF datagram: Stats.Lost counts data
						lost = append(lost, [2]int64{a, off})
					}
					return true
				}
				return false
			}
			defer func() { udpDropHook = nil }()
			got, st := udpRun(t, input, 0)
			if off != int64(len(input)) {
				t.Fatalf("the sender sent %d payload bytes, want %d", off, len(input))
			}
			// The lines that should arrive: those that touch no lost range.
			var want bytes.Buffer
			var wantLines [][]byte
			var pos int64
			kept := 0
			for _, l := range lines {
				a, b := pos, pos+int64(len(l))
				pos = b
				touched := false
				for _, r := range lost {
					if r[0] < b && a < r[1] {
						touched = true
						break
					}
				}
				if !touched {
					want.Write(l)
					wantLines = append(wantLines, l)
					kept++
				}
			}
			n := wholeLinesOnly(t, got, lines)
			if st.Lost > int64(len(lost)) {
				// A loaded machine's socket buffer overflowed as well:
				// more lines may be gone, but each that came must be
				// one the hook's losses did not touch.
				wholeLinesOnly(t, got, wantLines)
				t.Logf("the kernel lost %d datagrams besides the hook's %d: %d of %d lines delivered", st.Lost-int64(len(lost)), len(lost), n, kept)
				return
			}
			if !bytes.Equal(got, want.Bytes()) {
				t.Fatalf("delivered %d lines (%d bytes); want the %d lines no loss touched (%d bytes); Stats.Lost %d, the hook dropped %d", n, len(got), kept, want.Len(), st.Lost, len(lost))
			}
			if st.Lost < int64(len(lost)) {
				t.Errorf("Stats.Lost = %d, want at least the %d datagrams dropped", st.Lost, len(lost))
			}
			t.Logf("%d datagrams lost, %d of %d lines delivered", len(lost), n, len(lines))
		})
	}
}

// TestUDPLongLinesOverload is the audit's repro at channel level: lines of
// 200 KB into a consumer that does not read while the producer writes
// 80 MB, so the receiver's socket buffer overflows for real. Every line
// delivered must be a whole input line.
func TestUDPLongLinesOverload(t *testing.T) {
	var lines [][]byte
	for i := 0; i < 400; i++ {
		l := fmt.Sprintf("line %06d ", i)
		lines = append(lines, []byte(l+strings.Repeat("x", 200_000-len(l)-1)+"\n"))
	}
	input := bytes.Join(lines, nil)
	got, st := udpRun(t, input, 300*time.Millisecond)
	n := wholeLinesOnly(t, got, lines)
	t.Logf("udp: %d datagrams sent, %d lost; %d of %d lines delivered", st.Records, st.Lost, n, len(lines))
	if st.Lost == 0 {
		t.Skip("nothing was lost: nothing to check here")
	}
	if n == len(lines) {
		t.Fatalf("%d datagrams counted lost, but every line arrived", st.Lost)
	}
}

// TestUDPOverlongLineCut: a line longer than udpLineMax is not held whole;
// when it loses a piece, what was written of it is ended with a newline,
// so it never runs into the next line, and the lines after it arrive.
func TestUDPOverlongLineCut(t *testing.T) {
	if testing.Short() {
		t.Skip("a 20 MiB line: not with -short")
	}
	first := []byte("first line\n")
	long := bytes.Repeat([]byte("0123456789abcdef"), (udpLineMax+4<<20)/16)
	long[len(long)-1] = '\n'
	last := []byte("last line\n")
	input := bytes.Join([][]byte{first, long, last}, nil)
	const lose = 300 // a datagram well past udpLineMax into the long line
	var cut int64    // where the lost datagram's payload starts in long
	var off int64
	udpDropHook = func(seq uint64, payload []byte) bool {
		if seq == lose {
			cut = off - int64(len(first))
		}
		off += int64(len(payload))
		return seq == lose
	}
	defer func() { udpDropHook = nil }()
	got, st := udpRun(t, input, 0)
	want := bytes.Join([][]byte{first, long[:cut], newline, last}, nil)
	if cut < udpLineMax {
		t.Fatalf("lost piece at %d of the long line, want past udpLineMax (%d)", cut, udpLineMax)
	}
	if st.Lost == 1 && !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want %d: the first line, %d bytes of the long one and a newline, the last line", len(got), len(want), cut)
	}
	// Whatever else the load lost, no line runs into another.
	for _, l := range bytes.SplitAfter(got, newline) {
		if len(l) > 0 && !bytes.Equal(l, first) && !bytes.Equal(l, last) && !bytes.HasPrefix(long, l[:len(l)-1]) {
			t.Fatalf("delivered a line (%d bytes, %q...) made of other lines' parts", len(l), l[:min(20, len(l))])
		}
	}
}
