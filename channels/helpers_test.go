package channels

// Helpers for the pipe, fifo, copy, fan-out and fan-in tests. Names start
// with pf so they can't collide with other tests of the package.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pfFDs lists this process's open fds, to compare before and after a test.
func pfFDs(t testing.TB) map[string]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	fds := map[string]string{}
	for _, e := range ents {
		target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		fds[e.Name()] = target
	}
	return fds
}

// pfNoLeak fails the test if fds were opened since before and are still
// open. pfWarm must have run before before was taken, so that the Go
// runtime's own fds (epoll, its wakeup eventfd) are already there.
func pfNoLeak(t testing.TB, before map[string]string) {
	t.Helper()
	var leaked []string
	deadline := time.Now().Add(2 * time.Second)
	for {
		leaked = leaked[:0]
		for fd, target := range pfFDs(t) {
			if before[fd] != target {
				leaked = append(leaked, fd+" -> "+target)
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // a Close may be in flight
	}
	if len(leaked) > 0 {
		t.Errorf("fds leaked: %v", leaked)
	}
}

// pfWarm makes the Go runtime open its poller before fds are counted.
func pfWarm(t testing.TB) map[string]string {
	t.Helper()
	if err := exec.Command("true").Run(); err != nil {
		t.Fatal(err)
	}
	return pfFDs(t)
}

func pfSha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// pfBash runs a bash command and returns its stdout: the reference output.
func pfBash(t testing.TB, script string) []byte {
	t.Helper()
	out, err := exec.Command("bash", "-c", script).Output()
	if err != nil {
		t.Fatalf("bash -c %q: %v", script, err)
	}
	return out
}

// pfStart starts `sh -c script` with the given stdin and stdout (nil:
// /dev/null) and extra fds 3, 4, ..., then closes the parent's copies of
// the files it was given, as exec does after starting a stage.
func pfStart(t testing.TB, script string, stdin, stdout *os.File, extra ...*os.File) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	if stdout != nil {
		cmd.Stdout = stdout
	}
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = extra
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range append([]*os.File{stdin, stdout}, extra...) {
		if f != nil {
			f.Close()
		}
	}
	return cmd
}

// pfPipe is Pipe(0) that fails the test on error.
func pfPipe(t testing.TB) (r, w *os.File) {
	t.Helper()
	r, w, err := Pipe(0)
	if err != nil {
		t.Fatal(err)
	}
	return r, w
}

// pfReadAll reads f to its end in a goroutine; the result comes on the
// channel, and f is closed.
func pfReadAll(f *os.File) <-chan []byte {
	c := make(chan []byte, 1)
	go func() {
		var b bytes.Buffer
		b.ReadFrom(f)
		f.Close()
		c <- b.Bytes()
	}()
	return c
}

// pfSignaled is the signal that ended cmd (after Wait), or 0.
func pfSignaled(err error) syscall.Signal {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return ws.Signal()
		}
		// sh -c reports its child's death by signal N as status 128+N.
		if c := ee.ExitCode(); c > 128 {
			return syscall.Signal(c - 128)
		}
	}
	return 0
}

// pfWrite writes data to path in the test's temp directory.
func pfWrite(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// pfInputs are the byte streams every type must carry unchanged.
func pfInputs() map[string][]byte {
	bin := make([]byte, 300_000)
	for i := range bin {
		bin[i] = byte(i * 7 % 251) // NULs included, and no line structure
	}
	return map[string][]byte{
		"text":       []byte(strings.Repeat("the quick brown fox\n", 5000)),
		"binary":     bin,
		"empty":      nil,
		"no-newline": []byte("last line without newline"),
	}
}

// pump writes input into ch's producer end and returns what its one reader
// gets, closing both ends.
func pump(t testing.TB, ch Channel, input []byte) []byte {
	t.Helper()
	w, r := ch.Writer(), ch.Reader(0)
	go func() {
		w.Write(input)
		w.Close()
	}()
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	return got
}
