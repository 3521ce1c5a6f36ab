package channels

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ipcflow/ipcflow/budget"
	"github.com/ipcflow/ipcflow/internal/testkit"
)

// chain runs `producer | consumer` over one channel of spec, the way exec
// wires it, and returns the consumer's output.
func chain(t *testing.T, env Env, spec Spec, producer, consumer string) []byte {
	t.Helper()
	ch, err := Open(env, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	out, res := testkit.FileCollector(t)
	prod := testkit.Start(t, producer, nil, ch.Writer())
	cons := testkit.Start(t, consumer, ch.Reader(0), out)
	if err := ch.Wait(); err != nil {
		t.Fatal(err)
	}
	prod.Wait()
	if err := cons.Wait(); err != nil {
		t.Fatalf("%s: %v", consumer, err)
	}
	return res()
}

func TestPipeCarriesBytesUnchanged(t *testing.T) {
	before := testkit.Warm(t)
	for name, in := range testkit.Inputs() {
		t.Run(name, func(t *testing.T) {
			f := testkit.WriteTemp(t, "in", in)
			got := chain(t, Env{}, Spec{ID: "e1", Type: "pipe"}, "cat "+f, "cat")
			if !bytes.Equal(got, in) {
				t.Fatalf("got %d bytes, want %d", len(got), len(in))
			}
		})
	}
	t.Run("seq|head", func(t *testing.T) {
		want := testkit.Bash(t, "seq 1 100000 | head -n 5000")
		got := chain(t, Env{}, Spec{ID: "e1", Type: "pipe", Options: Options{Size: 1 << 20}}, "seq 1 100000", "head -n 5000")
		if !bytes.Equal(got, want) {
			t.Fatalf("got %d bytes, want %d", len(got), len(want))
		}
	})
	testkit.NoLeak(t, before)
}

func TestPipeSizeOption(t *testing.T) {
	// The kernel rounds a size up to a power of two pages.
	for size, want := range map[int64]int64{4096: 4096, 100_000: 128 << 10, 1 << 20: 1 << 20} {
		ch, err := Open(Env{}, Spec{ID: "e1", Type: "pipe", Options: Options{Size: size}})
		if err != nil {
			t.Fatal(err)
		}
		got, err := budget.PipeSize(ch.Writer())
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("size=%d: pipe has %d, want %d", size, got, want)
		}
		ch.Writer().Close()
		ch.Close()
	}
}

func TestPipeCheck(t *testing.T) {
	typ, ok := Lookup("pipe")
	if !ok {
		t.Fatal("pipe not registered")
	}
	err := typ.Check(Options{Size: budget.PipeMaxSize() + 1})
	if err == nil || !strings.Contains(err.Error(), "/proc/sys/fs/pipe-max-size") {
		t.Errorf("Check above the limit: %v, want an error naming the limit's file (budget.CheckPipeSize)", err)
	}
	if err := typ.Check(Options{Size: budget.PipeMaxSize()}); err != nil {
		t.Errorf("Check at the limit: %v", err)
	}
	if _, err := Open(Env{}, Spec{ID: "e7", Type: "pipe", Options: Options{Size: 1 << 30}}); err == nil || !strings.HasPrefix(err.Error(), "edge e7: ") {
		t.Errorf("Open above the limit: %v, want an error naming the edge", err)
	}
	if _, err := Open(Env{}, Spec{ID: "e1", Type: "pipe", Readers: 2}); err == nil {
		t.Error("a pipe channel with 2 readers was accepted")
	}
}

// Ends never handed out are closed by Close; ends handed out are not.
func TestPipeCloseOwnership(t *testing.T) {
	before := testkit.Warm(t)
	ch, err := Open(Env{}, Spec{ID: "e1", Type: "pipe"})
	if err != nil {
		t.Fatal(err)
	}
	ch.Close()
	testkit.NoLeak(t, before)

	ch, _ = Open(Env{}, Spec{ID: "e1", Type: "pipe"})
	w := ch.Writer()
	ch.Close()
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("write succeeded with the read end closed by Close")
	}
	if ch.Reader(1) != nil {
		t.Error("Reader(1) of a one-reader channel is not nil")
	}
	w.Close()
	ch.Close() // twice is fine
	if ch.Wait() != nil || ch.Stats() != (Stats{}) {
		t.Error("a pipe has no bridge: Wait nil, Stats empty")
	}
	testkit.NoLeak(t, before)
}

// exec plans by Caps: a pipe is neither bridged nor multi-reader (fan-out
// over pipes is a Tee).
func TestPipeCaps(t *testing.T) {
	typ, _ := Lookup("pipe")
	if typ.Caps.Bridged || typ.Caps.FanOut {
		t.Errorf("pipe caps %+v, want neither bridged nor fan-out", typ.Caps)
	}
}
