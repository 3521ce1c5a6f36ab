package channels

import (
	"bytes"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"
)

// teeTo starts a Tee from a producer script to n `cat` consumers writing
// into files, and returns what each got (after the Tee and the processes
// are done).
func teeTo(t *testing.T, producer string, consumers []string, spillDir string) ([][]byte, *Mover) {
	t.Helper()
	r, w := pfPipe(t)
	prod := pfStart(t, producer, nil, w)
	var dsts []*os.File
	var cons []interface{ Wait() error }
	var outs []func() []byte
	for _, c := range consumers {
		cr, cw := pfPipe(t)
		o, res := fileCollector(t)
		cons = append(cons, pfStart(t, c, cr, o))
		dsts = append(dsts, cw)
		outs = append(outs, res)
	}
	m := StartTee(r, dsts, spillDir)
	if err := m.Wait(); err != nil {
		t.Fatalf("Tee: %v", err)
	}
	if err := prod.Wait(); err != nil && pfSignaled(err) != syscall.SIGPIPE {
		t.Errorf("producer: %v", err)
	}
	var got [][]byte
	for i, c := range cons {
		c.Wait()
		got = append(got, outs[i]())
	}
	return got, m
}

func TestTeeCarriesBytesUnchanged(t *testing.T) {
	before := pfWarm(t)
	for name, in := range pfInputs() {
		t.Run(name, func(t *testing.T) {
			f := pfWrite(t, "in", in)
			got, _ := teeTo(t, "cat "+f, []string{"cat", "cat", "cat"}, t.TempDir())
			for i, g := range got {
				if !bytes.Equal(g, in) {
					t.Errorf("output %d: %d bytes (sha %s), want %d (sha %s)", i, len(g), pfSha(g), len(in), pfSha(in))
				}
			}
		})
	}
	pfNoLeak(t, before)
}

// 64 MiB to three consumers, checked by hash against the input.
func TestTeeLargeByHash(t *testing.T) {
	before := pfWarm(t)
	in := pfWrite(t, "big", nil)
	want := pfBash(t, fmt.Sprintf("head -c 67108864 /dev/urandom | tee %s | sha256sum", in))
	got, _ := teeTo(t, "cat "+in, []string{"sha256sum", "cat | sha256sum", "sha256sum"}, t.TempDir())
	for i, g := range got {
		if !bytes.Equal(g, want) {
			t.Errorf("output %d: %s, want %s", i, g, want)
		}
	}
	pfNoLeak(t, before)
}

// Three consumers of different speeds: one fast, one slow, one that stops
// after 10 bytes. The others still get everything, and the slow one does
// not hold up the fast one (it spills past the memory bound instead).
func TestTeeDifferentSpeeds(t *testing.T) {
	before := pfWarm(t)
	spill := t.TempDir()
	in := pfWrite(t, "in", nil)
	want := pfBash(t, fmt.Sprintf("seq 1 2000000 | tee %s", in)) // 15 MiB
	start := time.Now()
	got, m := teeTo(t, "cat "+in, []string{
		"cat",
		"head -c 10",
		"sleep 1; cat", // reads nothing for a second: its backlog spills
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
	if m.spill.Load() == 0 {
		t.Errorf("nothing spilled in %v, want the slow consumer's backlog beyond %d bytes", time.Since(start), teeMemBound)
	}
	if ents, _ := os.ReadDir(spill); len(ents) != 0 {
		t.Errorf("spill directory not empty: %v", ents)
	}
	pfNoLeak(t, before)
}
