package watch

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ipcflow/ipcflow/internal/testkit"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testkit.RemoveIpcflowBuild()
	os.Exit(code)
}

// deadline is how long a test waits for something it can see (a run's
// output, a line on stderr): long, for a loaded two-core machine; a test
// that passes waits only as long as it takes.
const deadline = 20 * time.Second

// session is one `watch` in this process, its runs the real ipcflow
// binary, each in its own run base (XDG_RUNTIME_DIR) and checked for
// leaks and stray processes at the end.
type session struct {
	t      testing.TB
	dir    string // the script's directory
	script string
	out    string     // the runs' stdout
	stderr syncBuffer // watch's and the runs' stderr
	stop   chan os.Signal
	done   chan error
	ended  bool
}

// watchFlow writes flow to a script and watches it with o (Script, Exe,
// streams and Stop filled in; Debounce 100ms unless set).
func watchFlow(t testing.TB, flow string, o Options) *session {
	t.Helper()
	return watchFlowIn(t, t.TempDir(), flow, o)
}

// watchFlowIn is watchFlow with the runs' base directory (their
// XDG_RUNTIME_DIR) given.
func watchFlowIn(t testing.TB, runBase, flow string, o Options) *session {
	t.Helper()
	bin := testkit.BuildIpcflow(t)
	t.Setenv("XDG_RUNTIME_DIR", runBase)
	mark := fmt.Sprintf("%s-%d-%d", t.Name(), os.Getpid(), time.Now().UnixNano())
	t.Setenv("IPCFLOW_TEST_MARK", mark)
	t.Cleanup(func() {
		for _, pid := range testkit.MarkedProcs(mark) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	t.Cleanup(testkit.LeakCheck(t, runBase))
	s := &session{t: t, dir: t.TempDir(), stop: make(chan os.Signal, 1), done: make(chan error, 1)}
	s.script = filepath.Join(s.dir, "flow.ipcflow")
	s.save(flow)
	s.out = filepath.Join(t.TempDir(), "out")
	out, err := os.Create(s.out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	o.Script, o.Exe, o.Argv0 = s.script, bin, bin
	o.Stdout, o.Stderr, o.Stop = out, &s.stderr, s.stop
	if o.Debounce == 0 {
		o.Debounce = 100 * time.Millisecond
	}
	go func() { s.done <- Watch(o) }()
	t.Cleanup(func() {
		s.end()
		testkit.WaitNoProcs(s.t, mark, deadline)
	})
	return s
}

// save writes the script in place.
func (s *session) save(flow string) {
	s.t.Helper()
	if err := os.WriteFile(filepath.Join(s.dir, "flow.ipcflow"), []byte(flow), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// end stops watch as SIGINT does and returns its error.
func (s *session) end() error {
	if s.ended {
		return nil
	}
	s.ended = true
	s.stop <- syscall.SIGINT
	select {
	case err := <-s.done:
		return err
	case <-time.After(deadline):
		s.t.Fatalf("watch did not end on SIGINT\n%s", s.stderr.String())
		return nil
	}
}

// runs is how many lines the runs wrote to stdout: each test flow writes
// one per run.
func (s *session) runs() int {
	b, _ := os.ReadFile(s.out)
	return bytes.Count(b, []byte("\n"))
}

// waitRuns waits until the runs have written n lines.
func (s *session) waitRuns(n int) {
	s.t.Helper()
	s.waitFor(func() bool { return s.runs() >= n }, fmt.Sprintf("%d runs", n))
}

// waitStderr waits until stderr holds text n times.
func (s *session) waitStderr(text string, n int) {
	s.t.Helper()
	s.waitFor(func() bool { return strings.Count(s.stderr.String(), text) >= n }, fmt.Sprintf("%q %d times on stderr", text, n))
}

func (s *session) waitFor(ok func() bool, what string) {
	s.t.Helper()
	end := time.Now().Add(deadline)
	for !ok() {
		if time.Now().After(end) {
			s.t.Fatalf("no %s within %v; %d runs; stderr:\n%s", what, deadline, s.runs(), s.stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// exactRuns waits for run n, and checks that no other follows: one run
// per change.
func (s *session) exactRuns(n int) {
	s.t.Helper()
	s.waitRuns(n)
	s.settled(n)
}

// settled checks that there are still exactly n runs after a while: no
// event of a save counted twice. The wait is a fixed time, as a check
// that nothing happens must be.
func (s *session) settled(n int) {
	s.t.Helper()
	time.Sleep(500 * time.Millisecond)
	if got := s.runs(); got != n {
		s.t.Fatalf("%d runs, want %d; stderr:\n%s", got, n, s.stderr.String())
	}
}

// syncBuffer is a bytes.Buffer that watch and its runs write to while
// the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
