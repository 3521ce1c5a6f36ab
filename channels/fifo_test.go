package channels

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/budget"
	"github.com/ipcflow/ipcflow/fdio"
	"github.com/ipcflow/ipcflow/internal/testkit"
)

// fifoEnv is a run's Env over a fresh 0700 directory; recorded lists what
// Record was told, and Record fails the test if the object already exists
// (it must be called before the object is made).
func fifoEnv(t *testing.T) (Env, *[]string) {
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var recorded []string
	return Env{
		RunDir: dir,
		Prefix: "ipcflow.0123456789abcdef.",
		Record: func(kind, name string) error {
			if kind != KindFile {
				t.Errorf("recorded %s %s, want kind %s", kind, name, KindFile)
			}
			if _, err := os.Lstat(name); err == nil {
				t.Errorf("Record(%s) after the object was made", name)
			}
			recorded = append(recorded, name)
			return nil
		},
	}, &recorded
}

func TestFifoCarriesBytesUnchanged(t *testing.T) {
	before := testkit.Warm(t)
	for name, in := range testkit.Inputs() {
		t.Run(name, func(t *testing.T) {
			env, recorded := fifoEnv(t)
			f := testkit.WriteTemp(t, "in", in)
			got := chain(t, env, Spec{ID: "e2", Type: "fifo"}, "cat "+f, "cat")
			if !bytes.Equal(got, in) {
				t.Fatalf("got %d bytes, want %d", len(got), len(in))
			}
			if len(*recorded) != 1 || filepath.Dir((*recorded)[0]) != env.RunDir || !strings.HasPrefix(filepath.Base((*recorded)[0]), env.Prefix+"e2") {
				t.Errorf("recorded %v, want one FIFO named after the edge in %s", *recorded, env.RunDir)
			}
			testkit.EmptyDir(t, env.RunDir)
		})
	}
	t.Run("seq|head", func(t *testing.T) {
		env, _ := fifoEnv(t)
		want := testkit.Bash(t, "seq 1 100000 | head -n 5000")
		got := chain(t, env, Spec{ID: "e2", Type: "fifo"}, "seq 1 100000", "head -n 5000")
		if !bytes.Equal(got, want) {
			t.Fatalf("got %d bytes, want %d", len(got), len(want))
		}
	})
	testkit.NoLeak(t, before)
}

// Without path= the name is gone as soon as Open returns (both ends are
// open): a crash can't leave it. The ends still work.
func TestFifoUnlinkedOnceOpen(t *testing.T) {
	env, recorded := fifoEnv(t)
	ch, err := Open(env, Spec{ID: "e3", Type: "fifo", Options: Options{Size: 256 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	testkit.EmptyDir(t, env.RunDir)
	if len(*recorded) != 1 {
		t.Errorf("recorded %v", *recorded)
	}
	var st unix.Stat_t
	fd, _ := fdio.FD(ch.Writer())
	unix.Fstat(fd, &st)
	if st.Mode&unix.S_IFMT != unix.S_IFIFO || st.Mode&0o777 != 0o600 {
		t.Errorf("mode %o, want a FIFO with 0600", st.Mode)
	}
	if got, _ := budget.PipeSize(ch.Writer()); got != 256<<10 {
		t.Errorf("size %d, want %d", got, 256<<10)
	}
	// The read end blocks again (a stage expects a blocking stdin).
	rfd, _ := fdio.FD(ch.Reader(0))
	if fl, _ := unix.FcntlInt(uintptr(rfd), unix.F_GETFL, 0); fl&unix.O_NONBLOCK != 0 {
		t.Error("read end left non-blocking")
	}
	ch.Writer().Close()
	ch.Reader(0).Close()
}

// With path= the FIFO is visible while the run lasts and removed by Close.
func TestFifoPath(t *testing.T) {
	env, recorded := fifoEnv(t)
	path := filepath.Join(t.TempDir(), "watch.fifo")
	ch, err := Open(env, Spec{ID: "e4", Type: "fifo", Options: Options{Path: path}})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeNamedPipe == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("during the run: %v %v, want a 0600 FIFO", fi, err)
	}
	if len(*recorded) != 1 || (*recorded)[0] != path {
		t.Errorf("recorded %v, want [%s]", *recorded, path)
	}
	out, res := testkit.FileCollector(t)
	prod := testkit.Start(t, "printf 'a\\0b'", nil, ch.Writer())
	cons := testkit.Start(t, "cat", ch.Reader(0), out)
	prod.Wait()
	cons.Wait()
	if got := res(); string(got) != "a\x00b" {
		t.Errorf("got %q", got)
	}
	if err := ch.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("after Close: %v, want the FIFO gone", err)
	}
	testkit.EmptyDir(t, env.RunDir)
}

// A path that exists is an error, never reused; and Close does not remove
// a file that took the FIFO's place.
func TestFifoExclusive(t *testing.T) {
	env, _ := fifoEnv(t)
	path := filepath.Join(t.TempDir(), "taken")
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(env, Spec{ID: "e5", Type: "fifo", Options: Options{Path: path}})
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "exists") {
		t.Errorf("Open over an existing path: %v, want an error naming it", err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("the existing FIFO was removed: %v", err)
	}

	// The same through openFifo (no Check first): mkfifo's EEXIST.
	if _, err := openFifo(env, Spec{ID: "e5", Type: "fifo", Options: Options{Path: path}}); err == nil || !strings.Contains(err.Error(), "create fifo for edge e5") {
		t.Errorf("openFifo over an existing path: %v", err)
	}
	// And in the run directory.
	name := filepath.Join(env.RunDir, env.Prefix+"e6.fifo")
	os.WriteFile(name, nil, 0o600)
	if _, err := Open(env, Spec{ID: "e6", Type: "fifo"}); err == nil {
		t.Error("Open over an existing run-directory file succeeded")
	}
	os.Remove(name)

	p2 := filepath.Join(t.TempDir(), "swapped")
	ch, err := Open(env, Spec{ID: "e7", Type: "fifo", Options: Options{Path: p2}})
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(p2)
	os.WriteFile(p2, []byte("someone else's"), 0o600)
	ch.Close()
	if b, _ := os.ReadFile(p2); string(b) != "someone else's" {
		t.Error("Close removed a file that was not the FIFO it made")
	}
}

func TestFifoCheck(t *testing.T) {
	typ, _ := Lookup("fifo")
	if err := typ.Check(Options{Path: "/nonexistent-dir/x"}); err == nil || !strings.Contains(err.Error(), "/nonexistent-dir") {
		t.Errorf("missing directory: %v", err)
	}
	if err := typ.Check(Options{Size: budget.PipeMaxSize() * 2}); err == nil || !strings.Contains(err.Error(), "pipe-max-size") {
		t.Errorf("size above the limit: %v", err)
	}
}
