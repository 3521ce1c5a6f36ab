package ring

import (
	"bytes"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// newTestRing maps an anonymous shared ring (as shm does, without a name).
func newTestRing(t testing.TB, capacity int64, readers int) *Ring {
	t.Helper()
	mem, err := unix.Mmap(-1, 0, int(Size(capacity)), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	r, err := Init(mem, capacity, readers)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRingOrderAcrossWraps: random write and read sizes across many wraps
// of a small ring, three readers (one slow), every reader gets every byte.
func TestRingOrderAcrossWraps(t *testing.T) {
	const total = 8 << 20
	r := newTestRing(t, 4096, 3)
	want := make([]byte, total)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range want {
		want[i] = byte(rng.IntN(256))
	}
	var wg sync.WaitGroup
	got := make([][]byte, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rd := r.Reader(i)
			rng := rand.New(rand.NewPCG(uint64(i), 9))
			buf := make([]byte, 10000)
			for {
				n, err := rd.Read(buf[:1+rng.IntN(len(buf)-1)])
				got[i] = append(got[i], buf[:n]...)
				if err == io.EOF {
					return
				}
				if i == 2 && rng.IntN(50) == 0 {
					time.Sleep(50 * time.Microsecond) // the slow one
				}
			}
		}()
	}
	w := r.Writer()
	for off := 0; off < total; {
		n := min(total-off, 1+rng.IntN(9000))
		if _, err := w.Write(want[off : off+n]); err != nil {
			t.Fatal(err)
		}
		off += n
	}
	w.Close()
	wg.Wait()
	for i := range 3 {
		if !bytes.Equal(got[i], want) {
			t.Fatalf("reader %d got %d bytes, differing from the %d written", i, len(got[i]), total)
		}
	}
}

// TestRingReadersGone: the writer stops waiting once every reader closed.
func TestRingReadersGone(t *testing.T) {
	r := newTestRing(t, 4096, 2)
	r.Reader(0).Close()
	done := make(chan error)
	go func() {
		_, err := r.Writer().Write(make([]byte, 1<<20))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	r.Reader(1).Close()
	select {
	case err := <-done:
		if err != ErrReadersGone {
			t.Fatalf("write: %v, want ErrReadersGone", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("writer still waiting after every reader closed")
	}
}

// TestRingAttach: a second mapping of the same memory reads the header.
func TestRingAttach(t *testing.T) {
	r := newTestRing(t, 8192, 3)
	a, err := Attach(r.mem)
	if err != nil {
		t.Fatal(err)
	}
	if a.Capacity() != 8192 || a.Readers() != 3 {
		t.Fatalf("attached: capacity %d readers %d", a.Capacity(), a.Readers())
	}
	if _, err := Attach(make([]byte, 8192)); err == nil {
		t.Fatal("attached to zeroes")
	}
}

// TestLinear: a linear ring's writer gets the stream's next bytes at
// their own offsets in the data it was given, at most the window ahead of
// its slowest reader; a reader borrows what is published, in place,
// without wrapping; an attached header says it is linear.
func TestLinear(t *testing.T) {
	hdr := make([]byte, HeaderSize)
	data := make([]byte, 1<<20)
	r, err := InitLinear(hdr, 4096, 1)
	if err != nil {
		t.Fatal(err)
	}
	r.SetData(data)
	w, rd := r.Writer(), r.Reader(0)
	span, err := w.Reserve()
	if err != nil || len(span) != 4096 || &span[0] != &data[0] {
		t.Fatalf("first span: %d bytes, %v", len(span), err)
	}
	for i := range span {
		span[i] = byte(i)
	}
	w.Commit(4096)
	got, err := rd.Peek()
	if err != nil || len(got) != 4096 || &got[0] != &data[0] {
		t.Fatalf("peek: %d bytes, %v", len(got), err)
	}
	rd.Release(100)
	if span, err = w.Reserve(); err != nil || len(span) != 100 || &span[0] != &data[4096] {
		t.Fatalf("after the reader released 100: %d bytes, %v", len(span), err)
	}
	w.Commit(50)
	if got, _ = rd.Peek(); len(got) != 4046 || &got[0] != &data[100] {
		t.Fatalf("second peek: %d bytes", len(got))
	}
	if r.WriterPos() != 4146 {
		t.Errorf("WriterPos %d", r.WriterPos())
	}
	a, err := Attach(hdr)
	if err != nil || !a.Linear() || a.Capacity() != 4096 {
		t.Errorf("attach: %v, linear %v", err, a != nil && a.Linear())
	}
	if _, err := Attach(make([]byte, HeaderSize)); err == nil {
		t.Errorf("attach of a blank header: no error")
	}
}
