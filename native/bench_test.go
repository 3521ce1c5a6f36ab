package native_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/channels"
	"github.com/ipcflow/ipcflow/native"
)

// The benchmarks of native ports. BenchmarkShmStream is the Go client
// alone, in one process; the others run internal/porttool (Go) and
// native/c/testdata/porttool.c (C) as two processes over objects made by
// package channels exactly as a run makes them, with no ipcflow between
// them: what two native stages get. bench/native/run.sh runs them beside
// a C reference (bench/native/ref.c).

var tools struct {
	once       sync.Once
	dir        string
	goT, cT    string
	err, noGCC error
}

// TestMain removes the tools benchTools built.
func TestMain(m *testing.M) {
	code := m.Run()
	if tools.dir != "" {
		os.RemoveAll(tools.dir)
	}
	os.Exit(code)
}

func benchTools(tb testing.TB) (goTool, cTool string) {
	tools.once.Do(func() {
		dir, err := os.MkdirTemp("", "ipcflow-native-bench-")
		if err != nil {
			tools.err = err
			return
		}
		tools.dir = dir
		tools.goT = filepath.Join(dir, "gport")
		if out, err := exec.Command("go", "build", "-o", tools.goT, "../internal/porttool").CombinedOutput(); err != nil {
			tools.err = fmt.Errorf("go build porttool: %v\n%s", err, out)
			return
		}
		if _, err := exec.LookPath("gcc"); err != nil {
			tools.noGCC = err
			return
		}
		tools.cT = filepath.Join(dir, "cport")
		if out, err := exec.Command("gcc", "-O2", "-std=c99", "-o", tools.cT, "c/testdata/porttool.c", "-I", "c").CombinedOutput(); err != nil {
			tools.err = fmt.Errorf("gcc porttool.c: %v\n%s", err, out)
		}
	})
	if tools.err != nil {
		tb.Fatal(tools.err)
	}
	if tools.noGCC != nil {
		tb.Skip("gcc is not installed: no C side")
	}
	return tools.goT, tools.cT
}

// edge is a channel between two native ends, as a run makes it.
type edge struct {
	ch   channels.NativeEnds
	spec channels.Spec
}

func newEdge(tb testing.TB, typ string, o channels.Options) *edge {
	tb.Helper()
	env := channels.Env{RunDir: tb.TempDir(), Prefix: fmt.Sprintf("ipcflow.nbench%d.", os.Getpid()), Record: func(string, string) error { return nil }}
	spec := channels.Spec{ID: fmt.Sprintf("e%d", time.Now().UnixNano()), Type: typ, Readers: 1, Options: o, NativeWriter: true, NativeReaders: []bool{true}}
	ch, err := channels.Open(env, spec)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ch.Close() })
	return &edge{ch: ch.(channels.NativeEnds), spec: spec}
}

// port is one native port of a process: which end of which edge.
type port struct {
	name string
	e    *edge
	end  int // channels.WriterEnd or 0
}

// start starts tool with args and ports, as exec would start a native
// stage: the parts at fds 3 on, described in IPCFLOW_PORT_<NAME>.
func start(tb testing.TB, tool string, args []string, ports ...port) (*exec.Cmd, *bytes.Buffer) {
	tb.Helper()
	return startWithStdin(tb, tool, nil, args, ports...)
}

// startWithStdin is start with stdin as the process's standard input.
func startWithStdin(tb testing.TB, tool string, stdin []byte, args []string, ports ...port) (*exec.Cmd, *bytes.Buffer) {
	tb.Helper()
	cmd := exec.Command(tool, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = os.Environ()
	var handed []*os.File
	for _, p := range ports {
		s := native.Spec{Version: native.Version, Type: p.e.spec.Type, Role: native.RoleWriter, Ctl: -1, Readers: 1, Name: p.e.spec.ID}
		if p.end != channels.WriterEnd {
			s.Role = native.RoleReader
		}
		take := func(part int) int {
			f := p.e.ch.NativeFile(p.end, part)
			if f == nil {
				return -1
			}
			handed = append(handed, f)
			cmd.ExtraFiles = append(cmd.ExtraFiles, f)
			return 2 + len(cmd.ExtraFiles)
		}
		s.Fd, s.Ctl, s.Life = take(channels.NativeObject), take(channels.NativeControl), take(channels.NativeLife)
		switch s.Type {
		case "shm":
			s.Capacity = channels.ShmCapacity(p.e.spec.Options.Size)
		case "mq":
			s.MaxMsg, s.MsgSize = p.e.spec.Options.MaxMsg, p.e.spec.Options.MsgSize
		}
		cmd.Env = append(cmd.Env, native.Env(p.name)+"="+s.String())
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	for _, f := range handed {
		f.Close() // the process holds them now: its end is its life
	}
	go func() { <-time.After(time.Minute); cmd.Process.Kill() }()
	tb.Cleanup(func() {
		if errb.Len() > 0 {
			tb.Logf("%s stderr: %s", filepath.Base(tool), errb.Bytes())
		}
	})
	return cmd, &out
}

func wait(tb testing.TB, cmds ...*exec.Cmd) {
	tb.Helper()
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			tb.Fatalf("%s: %v", c.Path, err)
		}
	}
}

func fields(tb testing.TB, out *bytes.Buffer) []float64 {
	var v []float64
	for _, f := range strings.Fields(out.String()) {
		x, err := strconv.ParseFloat(f, 64)
		if err != nil {
			tb.Fatalf("porttool printed %q", out.String())
		}
		v = append(v, x)
	}
	return v
}

func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}

// BenchmarkRoundTrip: a 64-byte message to a pong process and back over
// two shm edges, both processes native in the same language; the metric
// is the median of 20,000 round trips (median of b.N runs).
func BenchmarkRoundTrip(b *testing.B) {
	goTool, cTool := benchTools(b)
	for _, lang := range []struct{ name, tool string }{{"c", cTool}, {"go", goTool}} {
		b.Run(lang.name, func(b *testing.B) {
			var meds []float64
			for range b.N {
				there := newEdge(b, "shm", channels.Options{Size: 64 << 10})
				back := newEdge(b, "shm", channels.Options{Size: 64 << 10})
				pong, _ := start(b, lang.tool, []string{"pong", "in", "out"}, port{"in", there, 0}, port{"out", back, channels.WriterEnd})
				ping, out := start(b, lang.tool, []string{"ping", "in", "out", "20000", "64"}, port{"in", back, 0}, port{"out", there, channels.WriterEnd})
				wait(b, ping, pong)
				meds = append(meds, fields(b, out)[0])
			}
			b.ReportMetric(median(meds), "ns/rtt")
		})
	}
}

// BenchmarkStream: 1 GiB (shm, 64 KiB writes in place into a 1 MiB ring)
// or 256 MiB (mq, whole 8 KiB messages: 8191 bytes and the trailer) from
// a gen process to a sink process that copies it out; the metric is the
// sink's throughput from its first byte to the end (median of b.N runs).
func BenchmarkStream(b *testing.B) {
	goTool, cTool := benchTools(b)
	for _, tc := range []struct {
		typ   string
		o     channels.Options
		bytes string
		chunk string
	}{
		{"shm", channels.Options{Size: 1 << 20}, "1073741824", "65536"},
		{"mq", channels.Options{MaxMsg: 10, MsgSize: 8192}, "268435456", "8191"},
	} {
		for _, lang := range []struct{ name, tool string }{{"c", cTool}, {"go", goTool}} {
			b.Run(tc.typ+"/"+lang.name, func(b *testing.B) {
				var rates []float64
				for range b.N {
					e := newEdge(b, tc.typ, tc.o)
					sink, out := start(b, lang.tool, []string{"sink", "in"}, port{"in", e, 0})
					gen, _ := start(b, lang.tool, []string{"gen", "out", tc.bytes, tc.chunk}, port{"out", e, channels.WriterEnd})
					wait(b, gen, sink)
					v := fields(b, out)
					rates = append(rates, v[0]/v[1])
				}
				b.ReportMetric(median(rates), "GB/s")
			})
		}
	}
}

// BenchmarkShmStream is the Go client alone: a writer reserving and
// committing 64 KiB spans and a reader copying them out, on two OS
// threads of one process, over a 1 MiB ring.
func BenchmarkShmStream(b *testing.B) {
	const capacity, chunk = 1 << 20, 64 << 10
	_, fd := newRing(b, capacity, 1)
	spec := func(role string) native.Spec {
		d, _ := unix.Dup(fd)
		return native.Spec{Version: 1, Type: "shm", Role: role, Fd: d, Ctl: -1, Life: -1, Readers: 1, Capacity: capacity, Name: "bench"}
	}
	w, err := native.NewShmWriter(spec(native.RoleWriter))
	if err != nil {
		b.Fatal(err)
	}
	r, err := native.NewShmReader(spec(native.RoleReader))
	if err != nil {
		b.Fatal(err)
	}
	src := bytes.Repeat([]byte("x"), chunk)
	b.SetBytes(chunk)
	b.ResetTimer()
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		buf := make([]byte, chunk)
		for {
			if _, err := r.Read(buf); err != nil {
				close(done)
				return
			}
		}
	}()
	runtime.LockOSThread()
	for range b.N {
		for left := chunk; left > 0; {
			span, err := w.Reserve()
			if err != nil {
				b.Fatal(err)
			}
			n := copy(span, src[:left])
			w.Commit(n)
			left -= n
		}
	}
	w.Close()
	<-done
	b.StopTimer()
	r.Close()
	runtime.UnlockOSThread()
}
