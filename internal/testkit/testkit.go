package testkit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// FDs lists this process's open fds, to compare before and after a test.
func FDs(t testing.TB) map[string]string {
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

// NoLeak fails the test if fds were opened since before and are still
// open. Warm must have run before before was taken, so that the Go
// runtime's own fds (epoll, its wakeup eventfd) are already there.
func NoLeak(t testing.TB, before map[string]string) {
	t.Helper()
	var leaked []string
	deadline := time.Now().Add(2 * time.Second)
	for {
		leaked = leaked[:0]
		for fd, target := range FDs(t) {
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

// Warm makes the Go runtime open its poller before fds are counted.
func Warm(t testing.TB) map[string]string {
	t.Helper()
	if err := exec.Command("true").Run(); err != nil {
		t.Fatal(err)
	}
	return FDs(t)
}

// Sha is b's SHA-256 in hex: what a test compares, or prints, in place
// of streams too large to show.
func Sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// BashOption sets up the bash that Bash starts.
type BashOption func(*exec.Cmd)

// Stdin gives bash in as its standard input (without it: /dev/null).
func Stdin(in []byte) BashOption {
	return func(c *exec.Cmd) { c.Stdin = bytes.NewReader(in) }
}

// InDir runs bash in dir (without it: the test's working directory).
func InDir(dir string) BashOption {
	return func(c *exec.Cmd) { c.Dir = dir }
}

// Bash runs `bash -c script` and returns its stdout: the reference output
// the tests compare with. A failing script fails the test, showing bash's
// stderr; where bash is not installed the test is skipped, as it has
// nothing to compare with.
func Bash(t testing.TB, script string, opts ...BashOption) []byte {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed: nothing to compare with")
	}
	cmd := exec.Command("bash", "-c", script)
	for _, o := range opts {
		o(cmd)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bash -c %q: %v\n%s", script, err, stderr.Bytes())
	}
	return out
}

// Start starts `sh -c script` with the given stdin and stdout (nil:
// /dev/null) and extra fds 3, 4, ..., then closes the parent's copies of
// the files it was given, as exec does after starting a stage.
func Start(t testing.TB, script string, stdin, stdout *os.File, extra ...*os.File) *exec.Cmd {
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

// Pipe is a pipe as the edges make them: close-on-exec, blocking (not in
// Go's poller, unlike os.Pipe's), of the default size; or fails the test.
func Pipe(t testing.TB) (r, w *os.File) {
	t.Helper()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(fds[0]), "|0"), os.NewFile(uintptr(fds[1]), "|1")
}

// ReadAll reads f to its end in a goroutine; the result comes on the
// channel, and f is closed.
func ReadAll(f *os.File) <-chan []byte {
	c := make(chan []byte, 1)
	go func() {
		var b bytes.Buffer
		b.ReadFrom(f)
		f.Close()
		c <- b.Bytes()
	}()
	return c
}

// Signaled is the signal that ended cmd (after Wait), or 0.
func Signaled(err error) syscall.Signal {
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

// WriteTemp writes data to name in the test's temp directory.
func WriteTemp(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// PipeFeeder is a pipe whose read end gives input, then end of file.
func PipeFeeder(t testing.TB, input []byte) *os.File {
	t.Helper()
	r, w := Pipe(t)
	go func() { w.Write(input); w.Close() }()
	return r
}

// PipeCollector is a pipe's write end and what its reader got, once the
// end is closed.
func PipeCollector(t testing.TB) (*os.File, func() []byte) {
	t.Helper()
	r, w := Pipe(t)
	got := ReadAll(r)
	return w, func() []byte { return <-got }
}

// FileFeeder is a file holding input, open for reading.
func FileFeeder(t testing.TB, input []byte) *os.File {
	f, err := os.Open(WriteTemp(t, "in", input))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// FileCollector is a new file open for writing and what it holds, read
// when asked.
func FileCollector(t testing.TB) (*os.File, func() []byte) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	return f, func() []byte {
		b, _ := os.ReadFile(f.Name())
		return b
	}
}

// Inputs are the byte streams every type must carry unchanged.
func Inputs() map[string][]byte {
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

// Pty opens a pseudo-terminal in raw mode (no newline translation): the
// master to read what was written, and the terminal as a stage would see
// ipcflow's stdout.
func Pty(t testing.TB) (master, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	mfd := rawFD(m)
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(mfd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	sfd := rawFD(s)
	tio, err := unix.IoctlGetTermios(sfd, unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	tio.Oflag &^= unix.OPOST
	tio.Lflag &^= unix.ECHO | unix.ICANON | unix.ISIG | unix.IEXTEN
	tio.Iflag &^= unix.ICRNL | unix.IXON
	if err := unix.IoctlSetTermios(sfd, unix.TCSETS, tio); err != nil {
		t.Fatal(err)
	}
	return m, s
}

// EmptyDir fails the test if dir has entries.
func EmptyDir(t testing.TB, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Errorf("%s not empty: %v", dir, ents)
	}
}

// rawFD is f's descriptor without f.Fd()'s switch to blocking mode.
func rawFD(f *os.File) int {
	fd := -1
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(u uintptr) { fd = int(u) })
	}
	return fd
}

// AddSeeds adds every file the globs match to f's seed corpus, so that
// plain `go test` runs them too (the scripts in testdata and examples).
func AddSeeds(f *testing.F, globs ...string) {
	f.Helper()
	for _, glob := range globs {
		files, err := filepath.Glob(glob)
		if err != nil {
			f.Fatal(err)
		}
		for _, name := range files {
			src, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(src)
		}
	}
}
