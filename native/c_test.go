package native_test

import (
	"bytes"
	"io"
	"math/rand"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/channels"
	"github.com/ipcflow/ipcflow/native"
)

// TestCHeaderAgainstGo compiles native/c/testdata/porttool.c (the C
// header's client) with gcc and runs it against this package in the test's
// own process, over objects made by package channels as a run makes them:
// a C writer to a Go reader and a Go writer to a C reader, over shm, mq and
// mmap, byte for byte. (exec/native_test.go does the same through ipcflow.)
func TestCHeaderAgainstGo(t *testing.T) {
	_, cTool := benchTools(t)
	data := make([]byte, 3<<20+12345)
	rand.New(rand.NewSource(7)).Read(data)
	for _, tc := range []struct {
		typ string
		o   channels.Options
	}{
		{"shm", channels.Options{Size: 64 << 10}},
		{"mq", channels.Options{MaxMsg: 8, MsgSize: 4096}},
		{"mmap", channels.Options{}},
	} {
		// C writer (fed data on stdin), Go reader.
		e := newEdge(t, tc.typ, tc.o)
		w, _ := startWithStdin(t, cTool, data, []string{"copy", "-", "out"}, port{"out", e, channels.WriterEnd})
		r := goEnd(t, e, 0)
		got, err := io.ReadAll(r.(io.Reader))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s, C writer to Go reader: %d bytes of %d, %v", tc.typ, len(got), len(data), err)
		}
		wait(t, w)
		r.Close()

		// Go writer, C reader.
		e = newEdge(t, tc.typ, tc.o)
		rd, out := start(t, cTool, []string{"copy", "in", "-"}, port{"in", e, 0})
		gw := goEnd(t, e, channels.WriterEnd)
		if _, err := gw.(io.Writer).Write(data); err != nil {
			t.Fatalf("%s: Go writer: %v", tc.typ, err)
		}
		if err := gw.Close(); err != nil {
			t.Fatalf("%s: Go writer's close: %v", tc.typ, err)
		}
		wait(t, rd)
		if !bytes.Equal(out.Bytes(), data) {
			t.Errorf("%s, Go writer to C reader: %d bytes of %d", tc.typ, out.Len(), len(data))
		}
	}
}

// goEnd opens end of e in this process, as a native stage would: with
// the channel's descriptors for it.
func goEnd(t *testing.T, e *edge, end int) io.Closer {
	t.Helper()
	s := native.Spec{Version: native.Version, Type: e.spec.Type, Role: native.RoleWriter, Ctl: -1, Life: -1, Readers: 1, Name: e.spec.ID}
	if end != channels.WriterEnd {
		s.Role = native.RoleReader
	}
	fd := func(part int) int {
		f := e.ch.NativeFile(end, part)
		if f == nil {
			return -1
		}
		// The descriptor is the port's now (its Close closes it); the
		// file must not close it again when collected.
		d, err := dupFD(f)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		return d
	}
	s.Fd, s.Ctl, s.Life = fd(channels.NativeObject), fd(channels.NativeControl), fd(channels.NativeLife)
	switch s.Type {
	case "shm":
		s.Capacity = channels.ShmCapacity(e.spec.Options.Size)
	case "mq":
		s.MaxMsg, s.MsgSize = e.spec.Options.MaxMsg, e.spec.Options.MsgSize
	}
	var c io.Closer
	var err error
	if end == channels.WriterEnd {
		switch s.Type {
		case "shm":
			c, err = native.NewShmWriter(s)
		case "mq":
			c, err = native.NewMQWriter(s)
		case "mmap":
			c, err = native.NewMmapWriter(s)
		}
	} else {
		switch s.Type {
		case "shm":
			c, err = native.NewShmReader(s)
		case "mq":
			c, err = native.NewMQReader(s)
		case "mmap":
			c, err = native.NewMmapReader(s)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func dupFD(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	d := -1
	var derr error
	rc.Control(func(fd uintptr) { d, derr = unix.Dup(int(fd)) })
	return d, derr
}
