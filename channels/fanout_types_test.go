package channels

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ipcflow/ipcflow/internal/testkit"
)

// runFanOut runs producer -[typ, readers=len(consumers)]-> each consumer
// (bash commands) and returns each consumer's output.
func runFanOut(t *testing.T, typ string, opts Options, producer string, consumers []string) [][]byte {
	t.Helper()
	env := testEnv(t)
	ch, err := Open(env, Spec{ID: "e1", Type: typ, Options: opts, Readers: len(consumers)})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	p := exec.Command("bash", "-c", producer)
	p.Stdout, p.Stderr = ch.Writer(), os.Stderr
	var cs []*exec.Cmd
	var outs []*bytes.Buffer
	for i, c := range consumers {
		cmd := exec.Command("bash", "-c", c)
		var b bytes.Buffer
		cmd.Stdin, cmd.Stdout, cmd.Stderr = ch.Reader(i), &b, os.Stderr
		cs, outs = append(cs, cmd), append(outs, &b)
	}
	for _, c := range append([]*exec.Cmd{p}, cs...) {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	p.Stdout.(*os.File).Close()
	for _, c := range cs {
		c.Stdin.(*os.File).Close()
	}
	done := make(chan error, 1)
	go func() {
		p.Wait()
		for _, c := range cs {
			c.Wait()
		}
		done <- ch.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("wait: %v", err)
		}
	case <-time.After(120 * time.Second):
		p.Process.Kill()
		for _, c := range cs {
			c.Process.Kill()
		}
		t.Fatal("fan-out hung")
	}
	var res [][]byte
	for _, b := range outs {
		res = append(res, b.Bytes())
	}
	return res
}

// TestFanOutThreeReaders: shm and mmap keep the data once for readers of
// different speeds (one slow, one stopping early); every reader still
// reading gets the whole stream.
func TestFanOutThreeReaders(t *testing.T) {
	var b bytes.Buffer
	// 20,000 lines (about 470 KB) still wrap the 64 KiB ring seven times;
	// the slow reader is a shell loop, a few seconds per 100,000 lines.
	for i := range 20000 {
		fmt.Fprintf(&b, "%d %s\n", i, strings.Repeat("w", i%37))
	}
	for _, typ := range []string{"shm", "mmap"} {
		t.Run(typ, func(t *testing.T) {
			producer := inputFile(t, b.Bytes())
			// A 64 KiB ring makes the writer wait for the slow reader many times.
			outs := runFanOut(t, typ, Options{Size: 64 << 10}, producer, []string{
				"cat",
				"while IFS= read -r l; do printf '%s\\n' \"$l\"; done", // slow: a shell loop
				"head -n 2",
				"sha256sum",
			})
			if !bytes.Equal(outs[0], b.Bytes()) {
				t.Errorf("fast reader got %s", short(outs[0]))
			}
			if !bytes.Equal(outs[1], b.Bytes()) {
				t.Errorf("slow reader got %s", short(outs[1]))
			}
			if string(outs[2]) != "0 \n1 w\n" {
				t.Errorf("head got %q", outs[2])
			}
			if want := testkit.Sha(b.Bytes()) + "  -\n"; string(outs[3]) != want {
				t.Errorf("sha256sum reader got %q, want %q", outs[3], want)
			}
		})
	}
}

// TestFanOutAllReadersGone: when every reader stops early the producer
// sees a closed pipe.
func TestFanOutAllReadersGone(t *testing.T) {
	for _, typ := range []string{"shm", "mmap"} {
		t.Run(typ, func(t *testing.T) {
			outs := runFanOut(t, typ, Options{}, "yes; echo \"yes ended: $?\" >&2; exit 7", []string{"head -n 1", "head -c 3"})
			if string(outs[0]) != "y\n" || string(outs[1]) != "y\ny" {
				t.Fatalf("got %q", outs)
			}
		})
	}
}

// TestShmFullIsAnErrorNow: a ring larger than /dev/shm fails at Open with
// a clear error (fallocate), not with a SIGBUS later; nothing is left.
func TestShmFullIsAnErrorNow(t *testing.T) {
	env := testEnv(t)
	_, err := Open(env, Spec{ID: "e1", Type: "shm", Options: Options{Size: 1 << 50}})
	if err == nil || !strings.Contains(err.Error(), "no room") {
		t.Fatalf("1 PiB ring: %v, want a no-room error", err)
	}
}
