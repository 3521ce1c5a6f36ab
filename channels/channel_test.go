package channels

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/ipcflow/ipcflow/fdio"
)

// OpensAsFile tells exec the truth about every type's ends: what it calls
// a pipe is an anonymous pipe ("pipe:[N]" in /proc/self/fd), and what it
// does not is a named FIFO or a socket. A wrong answer either costs a copy
// or gives a port a /dev/fd path that cannot be opened (issue 10).
func TestOpensAsFileMatchesTheEnds(t *testing.T) {
	cases := []struct {
		typ string
		o   Options
	}{
		{"pipe", Options{}}, {"fifo", Options{}}, {"mq", Options{}}, {"shm", Options{}}, {"mmap", Options{}},
		{"socket", Options{Socket: "unix"}}, {"socket", Options{Socket: "tcp"}}, {"socket", Options{Socket: "udp"}},
	}
	for _, c := range cases {
		t.Run(c.typ+"-"+c.o.Socket, func(t *testing.T) {
			ch, err := Open(testEnv(t), Spec{ID: "e1", Type: c.typ, Options: c.o})
			if err != nil {
				t.Fatal(err)
			}
			w, r := ch.Writer(), ch.Reader(0)
			wantW, wantR := OpensAsFile(c.typ, c.o)
			if got := isAnonPipe(t, w); got != wantW {
				t.Errorf("writer is an anonymous pipe: %v; OpensAsFile says %v", got, wantW)
			}
			if got := isAnonPipe(t, r); got != wantR {
				t.Errorf("reader is an anonymous pipe: %v; OpensAsFile says %v", got, wantR)
			}
			w.Close()
			r.Close()
			ch.Wait()
			ch.Close()
		})
	}
}

func isAnonPipe(t *testing.T, f *os.File) bool {
	t.Helper()
	fd, err := fdio.FD(f)
	if err != nil {
		t.Fatal(err)
	}
	link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		t.Fatal(err)
	}
	return strings.HasPrefix(link, "pipe:[")
}
