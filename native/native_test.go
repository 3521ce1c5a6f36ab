package native_test

import (
	"errors"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/native"
	"github.com/ipcflow/ipcflow/ring"
)

func TestSpecRoundTrip(t *testing.T) {
	for _, s := range []native.Spec{
		{Version: 1, Type: "shm", Role: native.RoleReader, Fd: 3, Ctl: -1, Life: 4, Reader: 1, Readers: 3, Capacity: 65536, Name: "/dev/shm/ipcflow.x.e1"},
		{Version: 1, Type: "shm", Role: native.RoleWriter, Fd: 5, Ctl: -1, Life: 6, Readers: 1, Capacity: 4096, Name: "/dev/shm/ipcflow.x.e2"},
		{Version: 1, Type: "mq", Role: native.RoleWriter, Fd: 7, Ctl: 8, Life: 9, Readers: 1, MaxMsg: 10, MsgSize: 8192, Name: "/ipcflow.x.e3"},
		{Version: 1, Type: "mq", Role: native.RoleReader, Fd: 3, Ctl: 4, Life: 5, Readers: 1, MaxMsg: 4, MsgSize: 2, Name: "a name with spaces and name=x"},
	} {
		got, err := native.Parse("IPCFLOW_PORT_X", s.String())
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if got != s {
			t.Errorf("%s\nparsed as %+v\nwant      %+v", s, got, s)
		}
	}
}

func TestSpecErrors(t *testing.T) {
	for v, want := range map[string]string{
		"":                                                  "not an ipcflow port description",
		"ipcflow-port/x shm reader fd=3":                    "bad protocol version",
		"ipcflow-port/1 pipe reader fd=3":                   `unknown type "pipe"`,
		"ipcflow-port/1 shm sideways fd=3":                  `unknown role "sideways"`,
		"ipcflow-port/1 shm reader":                         "no fd=",
		"ipcflow-port/1 mq reader fd=3 life=4":              "no ctl=",
		"ipcflow-port/1 shm reader fd=-3":                   "is not a count",
		"ipcflow-port/1 shm reader fd=3 reader=2 readers=2": "reader 2 of 2",
	} {
		_, err := native.Parse("IPCFLOW_PORT_IN", v)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "IPCFLOW_PORT_IN: ") {
			t.Errorf("%q: %v, want %q", v, err, want)
		}
	}
}

// TestVersionMismatch: another protocol version is one error, of its
// own type, that says both versions.
func TestVersionMismatch(t *testing.T) {
	t.Setenv("IPCFLOW_PORT_IN", "ipcflow-port/2 shm reader fd=3 life=4 readers=1 name=/dev/shm/x")
	_, err := native.OpenReader("in")
	var ve *native.VersionError
	if !errors.As(err, &ve) || err.Error() != "IPCFLOW_PORT_IN: port protocol ipcflow-port/2, this client speaks ipcflow-port/1: build the stage against this ipcflow's client (native package or ipcflow_port.h)" {
		t.Errorf("got %v", err)
	}
	os.Unsetenv("IPCFLOW_PORT_IN")
	if _, err := native.OpenReader("in"); err == nil || !strings.Contains(err.Error(), "IPCFLOW_PORT_IN is not set") {
		t.Errorf("unset: %v", err)
	}
}

// newRing makes a ring in a memfd, as channels makes one in /dev/shm,
// and returns it with its descriptor.
func newRing(t testing.TB, capacity int64, readers int) (*ring.Ring, int) {
	t.Helper()
	fd, err := unix.MemfdCreate("ring", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	size := ring.Size(capacity)
	if err := unix.Ftruncate(fd, size); err != nil {
		t.Fatal(err)
	}
	mem, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	r, err := ring.Init(mem, capacity, readers)
	if err != nil {
		t.Fatal(err)
	}
	return r, fd
}

func dup(t testing.TB, fd int) int {
	d, err := unix.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestRingVersionMismatch: a segment whose header has another layout
// version is refused, naming both.
func TestRingVersionMismatch(t *testing.T) {
	_, fd := newRing(t, 4096, 1)
	mem, _ := unix.Mmap(fd, 0, ring.HeaderSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	mem[8] = 9
	unix.Munmap(mem)
	_, err := native.NewShmReader(native.Spec{Version: 1, Type: "shm", Role: native.RoleReader, Fd: dup(t, fd), Ctl: -1, Life: -1, Readers: 1, Name: "test"})
	if err == nil || !strings.Contains(err.Error(), "ring layout version 9, this client speaks 1") {
		t.Errorf("got %v", err)
	}
}

// TestShmInPlace: what the writer fills in reserved space is what the
// reader borrows, in the same memory, across wraps; a dead writer is an
// error after its last byte, a closed one end of stream; readers gone is
// EPIPE for the writer.
func TestShmInPlace(t *testing.T) {
	r, fd := newRing(t, 4096, 1)
	spec := func(role string) native.Spec {
		return native.Spec{Version: 1, Type: "shm", Role: role, Fd: dup(t, fd), Ctl: -1, Life: -1, Readers: 1, Capacity: 4096, Name: "test"}
	}
	w, err := native.NewShmWriter(spec(native.RoleWriter))
	if err != nil {
		t.Fatal(err)
	}
	rd, err := native.NewShmReader(spec(native.RoleReader))
	if err != nil {
		t.Fatal(err)
	}
	var next, want byte
	for round := 0; round < 50; round++ {
		span, err := w.Reserve()
		if err != nil {
			t.Fatal(err)
		}
		n := min(len(span), 1000)
		for i := range n {
			span[i] = next
			next++
		}
		w.Commit(n)
		got, err := rd.Borrow()
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range got {
			if b != want {
				t.Fatalf("round %d: byte %d, want %d", round, b, want)
			}
			want++
		}
		rd.Release(len(got))
	}
	r.MarkWriterDead() // what ipcflow does when the writer's process ends
	if _, err := rd.Borrow(); err != native.ErrWriterDied {
		t.Errorf("after the writer died: %v, want ErrWriterDied", err)
	}
	rd.Close()
	if _, err := w.Write([]byte("x")); !errors.Is(err, syscall.EPIPE) {
		t.Errorf("write with every reader gone: %v, want EPIPE", err)
	}
	w.Close()

	r2, fd2 := newRing(t, 4096, 1)
	_ = r2
	fd = fd2
	w, _ = native.NewShmWriter(spec(native.RoleWriter))
	rd, _ = native.NewShmReader(spec(native.RoleReader))
	w.Write([]byte("last words"))
	w.Close()
	if b, err := io.ReadAll(rd); err != nil || string(b) != "last words" {
		t.Errorf("after Close: %q, %v", b, err)
	}
	rd.Close()
}
