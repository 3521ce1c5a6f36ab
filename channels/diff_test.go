package channels

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/internal/testkit"
	"github.com/ipcflow/ipcflow/mqueue"
)

// The differential harness: the same data through every registered edge
// type (pipe and fifo included), with real processes at both ends, compared
// with what bash gives for `producer | consumer`. After every test the leak
// check looks for anything of ours left in /dev/shm, /dev/mqueue or the run
// directory.

var long = flag.Bool("long", false, "also run the 256 MiB cases, and the tests that use up the user's RLIMIT_MSGQUEUE for a moment")

var envSeq atomic.Int64

// testEnv is a run's environment for one test: a private run directory, a
// prefix of its own and a manifest in memory. At the end of the test the
// leak check must find nothing.
func testEnv(t testing.TB) Env {
	t.Helper()
	dir, err := os.MkdirTemp("", "ipcflow-chtest-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o700)
	env := Env{
		RunDir: dir,
		Prefix: fmt.Sprintf("ipcflow.t%dx%d.", os.Getpid(), envSeq.Add(1)),
	}
	var mu sync.Mutex
	var manifest, queues []string
	env.Record = func(kind, name string) error {
		mu.Lock()
		defer mu.Unlock()
		manifest = append(manifest, kind+" "+name)
		if kind == KindMQ {
			queues = append(queues, name)
		}
		return nil
	}
	t.Cleanup(func() {
		if l := leaks(env, queues...); len(l) > 0 {
			t.Errorf("left behind: %s (manifest: %q)", strings.Join(l, ", "), manifest)
		}
		os.RemoveAll(dir)
	})
	return env
}

// leaks lists what a run with env left: the objects named with its prefix
// (testkit.KernelObjects), the queues named that still exist, and anything
// in its run directory. /dev/mqueue is often not mounted (.ci/run mounts
// it), so the queues a test recorded are also looked for with mq_open.
func leaks(env Env, queues ...string) []string {
	found, _ := testkit.KernelObjects(env.Prefix)
	for _, q := range queues {
		if !slices.Contains(found, "/dev/mqueue"+q) && mqueue.Exists(q) {
			found = append(found, "mq "+q)
		}
	}
	if ents, err := os.ReadDir(env.RunDir); err == nil {
		for _, e := range ents {
			found = append(found, filepath.Join(env.RunDir, e.Name()))
		}
	}
	return found
}

// TestLeakCheckCatchesLeaks is the negative control: the check must see a
// segment, a queue and a run-directory file left on purpose.
func TestLeakCheckCatchesLeaks(t *testing.T) {
	env := Env{RunDir: t.TempDir(), Prefix: fmt.Sprintf("ipcflow.t%dleak.", os.Getpid())}
	if l := leaks(env); len(l) != 0 {
		t.Fatalf("clean env reported leaks: %v", l)
	}
	shm := "/dev/shm/" + env.Prefix + "e1"
	if err := os.WriteFile(shm, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(shm)
	os.WriteFile(filepath.Join(env.RunDir, "e2.mmap"), nil, 0o600)
	want := 2
	q := "/" + env.Prefix + "e3"
	if fd, err := mqueue.Open(q, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, 1, 16); err == nil {
		unix.Close(fd)
		defer mqueue.Unlink(q)
		want = 3 // seen in /dev/mqueue where it is mounted, else by its name
	}
	if l := leaks(env, q); len(l) != want {
		t.Fatalf("leak check found %v, want %d entries", l, want)
	}
}

// hop is one edge of a chain.
type hop struct {
	typ  string
	opts Options
}

func (h hop) String() string {
	if h.opts.Socket != "" {
		return h.typ + "/" + h.opts.Socket
	}
	return h.typ
}

// allHops is every registered type, the socket type once per kind.
func allHops() []hop {
	var hs []hop
	for _, n := range Names() {
		if n == "socket" {
			for _, k := range []string{"unix", "tcp", "udp"} {
				hs = append(hs, hop{n, Options{Socket: k}})
			}
			continue
		}
		hs = append(hs, hop{typ: n})
	}
	return hs
}

// result is what a chain did.
type result struct {
	out    []byte
	states []*os.ProcessState // producer, the cats in between, consumer
	stats  []Stats
}

// runChain runs producer -[hops[0]]-> cat -[hops[1]]-> cat ... -> consumer,
// producer and consumer being bash commands, and returns the consumer's
// standard output.
func runChain(t testing.TB, producer string, hops []hop, consumer string) result {
	t.Helper()
	env := testEnv(t)
	var chs []Channel
	defer func() {
		for _, ch := range chs {
			ch.Close()
		}
	}()
	for i, h := range hops {
		ch, err := Open(env, Spec{ID: fmt.Sprintf("e%d", i), Type: h.typ, Options: h.opts, Readers: 1})
		if err != nil {
			t.Fatalf("open %v: %v", h, err)
		}
		chs = append(chs, ch)
	}
	outFile, err := os.CreateTemp("", "ipcflow-chtest-out-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(outFile.Name())
	defer outFile.Close()

	var cmds []*exec.Cmd
	cmds = append(cmds, exec.Command("bash", "-c", producer))
	for range len(hops) - 1 {
		cmds = append(cmds, exec.Command("cat"))
	}
	cmds = append(cmds, exec.Command("bash", "-c", consumer))
	for i, c := range cmds {
		c.Stderr = os.Stderr
		if i == 0 {
			c.Stdin = nil
		} else {
			c.Stdin = chs[i-1].Reader(0)
		}
		if i == len(cmds)-1 {
			c.Stdout = outFile
		} else {
			c.Stdout = chs[i].Writer()
		}
	}
	for _, c := range cmds {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	// The stages have their copies: ours go, so EOF and EPIPE can travel.
	for _, c := range cmds {
		if f, ok := c.Stdin.(*os.File); ok {
			f.Close()
		}
		if f, ok := c.Stdout.(*os.File); ok && f != outFile {
			f.Close()
		}
	}
	var res result
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, c := range cmds {
			c.Wait()
			res.states = append(res.states, c.ProcessState)
		}
		for _, ch := range chs {
			if err := ch.Wait(); err != nil {
				t.Errorf("wait: %v", err)
			}
			res.stats = append(res.stats, ch.Stats())
		}
	}()
	select {
	case <-done:
	case <-time.After(120 * time.Second):
		for _, c := range cmds {
			c.Process.Kill()
		}
		t.Fatalf("chain %v hung", hops)
	}
	res.out, err = os.ReadFile(outFile.Name())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// cases are the inputs every type must carry exactly.
var cases = []struct {
	name string
	data func() []byte
}{
	{"text", func() []byte {
		var b bytes.Buffer
		for i := range 20000 {
			fmt.Fprintf(&b, "line %d of some text\n", i)
		}
		return b.Bytes()
	}},
	{"binary-nul", func() []byte {
		rng := rand.New(rand.NewPCG(1, 2))
		b := make([]byte, 300000)
		for i := range b {
			b[i] = byte(rng.IntN(256))
			if rng.IntN(5) == 0 {
				b[i] = 0
			}
		}
		return b
	}},
	{"no-final-newline", func() []byte { return []byte(strings.Repeat("abc\n", 5000) + "no newline at the end") }},
	{"empty", func() []byte { return nil }},
	{"long-lines", func() []byte {
		return []byte(strings.Repeat(strings.Repeat("x", 70000)+"\n", 3) + "short\n" + strings.Repeat("y", 20000))
	}},
}

// inputFile writes data to a file of the test's and returns a producer
// command that prints it.
func inputFile(t testing.TB, data []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "input")
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return "cat " + f
}

func short(b []byte) string {
	if len(b) > 80 {
		return fmt.Sprintf("%q... (%d bytes)", b[:80], len(b))
	}
	return fmt.Sprintf("%q", b)
}

// checkUDP accepts udp's output when it lost datagrams and said so: every
// line delivered is a whole line of the reference, in order.
func checkUDP(t *testing.T, got, want []byte, lost int64) {
	t.Helper()
	if lost == 0 {
		if !bytes.Equal(got, want) {
			t.Fatalf("udp lost nothing but output differs: got %s, want %s", short(got), short(want))
		}
		return
	}
	t.Logf("udp lost %d datagrams (allowed under load)", lost)
	rest := want
	for _, line := range bytes.SplitAfter(got, []byte("\n")) {
		i := bytes.Index(rest, line)
		if i < 0 || (i > 0 && rest[i-1] != '\n') {
			t.Fatalf("udp delivered a line that is not a whole line of the input, in order: %s", short(line))
		}
		rest = rest[i+len(line):]
	}
}

func TestEveryTypeMatchesBash(t *testing.T) {
	for _, h := range allHops() {
		for _, c := range cases {
			t.Run(h.String()+"/"+c.name, func(t *testing.T) {
				producer := inputFile(t, c.data())
				want := testkit.Bash(t, producer+" | cat")
				res := runChain(t, producer, []hop{h}, "cat")
				if h.opts.Socket == "udp" {
					checkUDP(t, res.out, want, res.stats[0].Lost)
					return
				}
				if !bytes.Equal(res.out, want) {
					t.Fatalf("got %s, want %s", short(res.out), short(want))
				}
				for i, st := range res.states {
					if !st.Success() {
						t.Errorf("process %d: %v", i, st)
					}
				}
			})
		}
	}
}

// TestLargeStreamsByHash moves 64 MiB (256 MiB with -long) through every
// type and compares the sha256 with bash's.
func TestLargeStreamsByHash(t *testing.T) {
	if testing.Short() {
		t.Skip("large streams: not with -short")
	}
	size := 64 << 20
	if *long {
		size = 256 << 20
	}
	// Lines of varied length with NUL bytes: mq's line packing gets work.
	producer := fmt.Sprintf("head -c %d /dev/urandom | tr '\\200-\\377' '\\n\\000'", size)
	seedFile := filepath.Join(t.TempDir(), "input")
	testkit.Bash(t, producer+" > "+seedFile) // the input
	want := testkit.Bash(t, "cat "+seedFile+" | sha256sum")
	for _, h := range allHops() {
		if h.opts.Socket == "udp" {
			continue // may lose under load, by design: see TestUDPLossCounted
		}
		t.Run(h.String(), func(t *testing.T) {
			res := runChain(t, "cat "+seedFile, []hop{h}, "sha256sum")
			if !bytes.Equal(res.out, want) {
				t.Fatalf("sha256 %s, want %s", res.out, want)
			}
		})
	}
}

// TestRandomChains runs random chains of types (udp left out: it may lose)
// and compares with bash.
func TestRandomChains(t *testing.T) {
	var pool []hop
	for _, h := range allHops() {
		if h.opts.Socket != "udp" {
			pool = append(pool, h)
		}
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	for i := range 6 {
		n := 2 + rng.IntN(3)
		var hops []hop
		for range n {
			hops = append(hops, pool[rng.IntN(len(pool))])
		}
		c := cases[rng.IntN(len(cases))]
		t.Run(fmt.Sprintf("%d-%v-%s", i, hops, c.name), func(t *testing.T) {
			producer := inputFile(t, c.data())
			want := testkit.Bash(t, producer+" | sha256sum")
			res := runChain(t, producer, hops, "sha256sum")
			if !bytes.Equal(res.out, want) {
				t.Fatalf("chain %v: %s, want %s", hops, res.out, want)
			}
		})
	}
}

// TestEarlyClose: a consumer that stops early makes the producer see a
// closed pipe (yes dies of SIGPIPE), on every type, and nothing hangs.
func TestEarlyClose(t *testing.T) {
	for _, h := range allHops() {
		t.Run(h.String(), func(t *testing.T) {
			res := runChain(t, "exec yes", []hop{h}, "head -n 3")
			if string(res.out) != "y\ny\ny\n" {
				t.Fatalf("head got %q", res.out)
			}
			st := res.states[0]
			ws, _ := st.Sys().(syscall.WaitStatus)
			if !ws.Signaled() || ws.Signal() != syscall.SIGPIPE {
				t.Fatalf("producer ended %v, want killed by SIGPIPE", st)
			}
		})
	}
}

// TestProducerKilled: end of stream reaches the consumer when the producer
// is killed, not only when it exits.
func TestProducerKilled(t *testing.T) {
	for _, h := range allHops() {
		t.Run(h.String(), func(t *testing.T) {
			res := runChain(t, "echo before; kill -9 $$", []hop{h}, "cat")
			if h.opts.Socket == "udp" && res.stats[0].Lost > 0 {
				return
			}
			if string(res.out) != "before\n" {
				t.Fatalf("got %q", res.out)
			}
		})
	}
}

var errTimeout = errors.New("timed out")

// TestNamesGoneOnceOpen: as soon as Open returns, no named object of the
// edge is left to see (both ends are open in ipcflow), so a SIGKILL of
// ipcflow from then on leaves nothing behind. Every type, fan-out too.
func TestNamesGoneOnceOpen(t *testing.T) {
	for _, h := range allHops() {
		t.Run(h.String(), func(t *testing.T) {
			env := testEnv(t)
			var recorded, queues []string
			env.Record = func(kind, name string) error {
				recorded = append(recorded, name)
				if kind == KindMQ {
					queues = append(queues, name)
				}
				return nil
			}
			readers := 1
			if tp, _ := Lookup(h.typ); tp.Caps.FanOut {
				readers = 3
			}
			ch, err := Open(env, Spec{ID: "e1", Type: h.typ, Options: h.opts, Readers: readers})
			if err != nil {
				t.Fatal(err)
			}
			defer ch.Close()
			if l := leaks(env, queues...); len(l) > 0 {
				t.Fatalf("after Open: %v still there (recorded %v)", l, recorded)
			}
			for _, name := range recorded {
				if _, err := os.Stat(name); err == nil {
					t.Fatalf("after Open: %s still there", name)
				}
			}
		})
	}
}

// TestCloseWhileRunning: Close during a stream whose consumer does not
// read (a teardown after SIGTERM) returns promptly on every type, with the
// bridges stopped and nothing left behind.
func TestCloseWhileRunning(t *testing.T) {
	for _, h := range allHops() {
		t.Run(h.String(), func(t *testing.T) {
			env := testEnv(t)
			ch, err := Open(env, Spec{ID: "e1", Type: h.typ, Options: h.opts, Readers: 1})
			if err != nil {
				t.Fatal(err)
			}
			p, c := exec.Command("yes"), exec.Command("sleep", "30")
			p.Stdout, c.Stdin = ch.Writer(), ch.Reader(0)
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			ch.Writer().Close()
			ch.Reader(0).Close()
			time.Sleep(100 * time.Millisecond) // pipes and object fill up
			done := make(chan struct{})
			go func() { ch.Close(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Close hung")
			}
			p.Process.Kill()
			c.Process.Kill()
			p.Wait()
			c.Wait()
			ch.Wait()
		})
	}
}
