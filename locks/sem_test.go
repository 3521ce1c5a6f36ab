package locks

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestCreateOpenUnlink(t *testing.T) {
	name := testSemName(t)
	s, err := Create(name, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer Unlink(name)
	defer s.Close()
	if s.Name() != name {
		t.Errorf("Name() = %q, want %q", s.Name(), name)
	}

	path, _ := SemPath(name)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || st.Size() != 32 {
		t.Errorf("%s: mode %v size %d, want 0600 and 32 bytes", path, st.Mode().Perm(), st.Size())
	}
	// glibc's new_sem: value 3 in the low word of data, no waiters,
	// private = FUTEX_SHARED (0x80), the rest zero.
	raw, _ := os.ReadFile(path)
	want := make([]byte, 32)
	want[0], want[8] = 3, 0x80
	if string(raw) != string(want) {
		t.Errorf("object bytes % x\nwant          % x", raw, want)
	}

	if _, err := Create(name, 1); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second Create: err %v, want one matching fs.ErrExist", err)
	}

	o, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := o.TryWait(); !ok || s.Value() != 2 {
		t.Errorf("after TryWait through a second mapping: ok %v, value %d, want true 2", ok, s.Value())
	}
	o.Close()
	if o.Value() != 0 {
		t.Errorf("Value after Close = %d, want 0", o.Value())
	}
	if err := o.Post(); err == nil {
		t.Error("Post after Close succeeded")
	}

	if err := Unlink(name); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(name); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open after Unlink: err %v, want one matching fs.ErrNotExist", err)
	}
	if err := Unlink(name); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("second Unlink: err %v, want one matching fs.ErrNotExist", err)
	}
	// The mapping outlives the name, as with sem_unlink.
	if err := s.Post(); err != nil || s.Value() != 3 {
		t.Errorf("Post after Unlink: %v, value %d", err, s.Value())
	}
}

// Without O_TMPFILE, Create goes through a temporary name, as glibc does:
// same object, and the temporary name is gone afterwards (TestMain's leak
// check looks for it too).
func TestCreateWithoutTmpfile(t *testing.T) {
	noTmpfile = true
	defer func() { noTmpfile = false }()
	s := newTestSem(t, 5)
	path, _ := SemPath(s.Name())
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 32)
	want[0], want[8] = 5, 0x80
	if string(raw) != string(want) {
		t.Errorf("object bytes % x\nwant          % x", raw, want)
	}
	if _, err := Create(s.Name(), 1); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second Create: %v, want fs.ErrExist", err)
	}
	if left := leakedObjects("no-such-prefix."); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestCreateModeIgnoresUmask(t *testing.T) {
	old := unix.Umask(0o277)
	defer unix.Umask(old)
	s := newTestSem(t, 0)
	path, _ := SemPath(s.Name())
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v under umask 0277, want 0600", st.Mode().Perm())
	}
}

func TestNames(t *testing.T) {
	for _, bad := range []string{"", "/", "//", "/a/b", "/.", "/..", "/" + strings.Repeat("x", 252)} {
		if _, err := Create(bad, 1); err == nil {
			t.Errorf("Create(%q) succeeded", bad)
			Unlink(bad)
		}
	}
	if p, err := SemPath("/" + strings.Repeat("x", 251)); err != nil || p != ShmDir+"/sem."+strings.Repeat("x", 251) {
		t.Errorf("SemPath of the longest name: %q, %v", p, err)
	}
	// glibc ignores leading slashes; so do we.
	if p, _ := SemPath("//db"); p != ShmDir+"/sem.db" {
		t.Errorf("SemPath(//db) = %q", p)
	}
	if _, err := Create("/"+testPrefix+"big", SemValueMax+1); err == nil {
		t.Error("Create with a value above SEM_VALUE_MAX succeeded")
	}
}

func TestOpenRejectsShortFile(t *testing.T) {
	name := testSemName(t)
	path, _ := SemPath(name)
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(path)
	if _, err := Open(name); err == nil || !strings.Contains(err.Error(), "not a semaphore") {
		t.Errorf("Open of a 5-byte file: %v", err)
	}
}

func TestCountTwo(t *testing.T) {
	s := newTestSem(t, 2)
	for i, want := range []bool{true, true, false} {
		if ok, err := s.TryWait(); ok != want || err != nil {
			t.Fatalf("TryWait #%d = %v, %v; want %v", i+1, ok, err, want)
		}
	}
	s.Post()
	if s.Value() != 1 {
		t.Errorf("Value = %d, want 1", s.Value())
	}
	s.Post()

	// Eight goroutines hammer a count of 2: never more than two inside.
	var inside, most atomic.Int32
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if err := s.Wait(context.Background()); err != nil {
					t.Error(err)
					return
				}
				n := inside.Add(1)
				for {
					m := most.Load()
					if n <= m || most.CompareAndSwap(m, n) {
						break
					}
				}
				time.Sleep(10 * time.Microsecond)
				inside.Add(-1)
				s.Post()
			}
		}()
	}
	wg.Wait()
	if most.Load() != 2 {
		t.Errorf("at most %d held at once, want exactly 2", most.Load())
	}
	if s.Value() != 2 || s.waiters() != 0 {
		t.Errorf("after: value %d, nwaiters %d; want 2, 0", s.Value(), s.waiters())
	}
}

func TestPostOverflow(t *testing.T) {
	s := newTestSem(t, SemValueMax)
	if err := s.Post(); !errors.Is(err, unix.EOVERFLOW) {
		t.Errorf("Post at SEM_VALUE_MAX: %v, want EOVERFLOW", err)
	}
}

func TestWaitDeadline(t *testing.T) {
	s := newTestSem(t, 0)
	// The clock starts before the deadline is made, so that time spent
	// between the two cannot make Wait look early (49.97 ms was seen).
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v, want DeadlineExceeded", err)
	}
	if el := time.Since(start); el < 50*time.Millisecond {
		t.Errorf("Wait gave up after %v, before its deadline", el)
	}
	if s.Value() != 0 || s.waiters() != 0 {
		t.Errorf("after timeout: value %d, nwaiters %d; want 0, 0", s.Value(), s.waiters())
	}
}

func TestWaitCancel(t *testing.T) {
	s := newTestSem(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Wait(ctx) }()
	waitFor(t, func() bool { return s.waiters() == 1 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait = %v, want Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled Wait did not return")
	}
	if s.waiters() != 0 || s.Value() != 0 {
		t.Errorf("after cancel: value %d, nwaiters %d", s.Value(), s.waiters())
	}
	// An already ended context takes nothing, even with a unit there.
	s.Post()
	if err := s.Wait(ctx); err != nil {
		t.Errorf("Wait with a unit available and a done ctx: %v (the unit should win)", err)
	}
	if err := s.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with no unit and a done ctx: %v", err)
	}
}

func TestPostWakesWaiter(t *testing.T) {
	s := newTestSem(t, 0)
	done := make(chan error)
	go func() { done <- s.Wait(context.Background()) }()
	waitFor(t, func() bool { return s.waiters() == 1 })
	s.Post()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Post did not wake the waiter")
	}
	if s.Value() != 0 || s.waiters() != 0 {
		t.Errorf("after: value %d, nwaiters %d", s.Value(), s.waiters())
	}
}

// waitFor polls cond for up to 10 seconds (the machine may be busy).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not reached in 10s")
}

// Several processes append to one file under a count-1 semaphore: their
// critical sections never overlap.
func TestMutualExclusionProcesses(t *testing.T) {
	s := newTestSem(t, 1)
	log := filepath.Join(t.TempDir(), "log")
	os.WriteFile(log, nil, 0o600)
	const procs, rounds = 4, 150
	var cmds []*exec.Cmd
	for p := 0; p < procs; p++ {
		cmd := helperCmd(t, "mutex", s.Name(), strconv.Itoa(rounds), log, fmt.Sprintf("go%d", p))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("helper: %v", err)
		}
	}
	counts := checkCriticalSections(t, log)
	for p := 0; p < procs; p++ {
		if n := counts[fmt.Sprintf("go%d", p)]; n != rounds {
			t.Errorf("go%d had %d critical sections, want %d", p, n, rounds)
		}
	}
	if s.Value() != 1 {
		t.Errorf("value after = %d, want 1", s.Value())
	}
}

// glibc's sem_wait/sem_post and ours alternate on two semaphores: every
// round needs a wake-up from the other implementation, both ways.
func TestGlibcPingPong(t *testing.T) {
	semc := buildC(t)
	a, b := newTestSem(t, 1), newTestSem(t, 0)
	log := filepath.Join(t.TempDir(), "log")
	os.WriteFile(log, nil, 0o600)
	const rounds = 500
	cmd := exec.Command(semc, "pingpong", a.Name(), b.Name(), strconv.Itoa(rounds), log)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(log, os.O_WRONLY|os.O_APPEND, 0)
	defer f.Close()
	// No deadline: a Wait that may be cancelled re-checks the value every
	// cancelPoll, which would hide a lost wake-up; this one cannot.
	ctx := context.Background()
	for i := 0; i < rounds; i++ {
		if err := b.Wait(ctx); err != nil {
			cmd.Process.Kill()
			t.Fatalf("round %d: %v", i, err)
		}
		fmt.Fprintf(f, "Go %d\n", i)
		a.Post()
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("semc: %v", err)
	}
	data, _ := os.ReadFile(log)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 2*rounds {
		t.Fatalf("%d log lines, want %d", len(lines), 2*rounds)
	}
	for i, l := range lines {
		want := fmt.Sprintf("%s %d", map[bool]string{true: "C", false: "Go"}[i%2 == 0], i/2)
		if l != want {
			t.Fatalf("log line %d = %q, want %q: the two sides did not alternate", i+1, l, want)
		}
	}
	if a.Value() != 1 || b.Value() != 0 || a.waiters() != 0 || b.waiters() != 0 {
		t.Errorf("after: a=%d/%d b=%d/%d (value/nwaiters)", a.Value(), a.waiters(), b.Value(), b.waiters())
	}
}

// C processes and Go processes contend for one count-1 semaphore; the
// checked critical sections never overlap. Objects made by glibc are opened
// by Go and the other way round.
func TestGlibcMutex(t *testing.T) {
	semc := buildC(t)
	for _, maker := range []string{"go", "glibc"} {
		t.Run("made-by-"+maker, func(t *testing.T) {
			var name string
			if maker == "go" {
				name = newTestSem(t, 1).Name()
			} else {
				name = testSemName(t)
				if out, err := exec.Command(semc, "create", name, "1").CombinedOutput(); err != nil {
					t.Fatalf("semc create: %v %s", err, out)
				}
				defer Unlink(name)
			}
			log := filepath.Join(t.TempDir(), "log")
			os.WriteFile(log, nil, 0o600)
			const rounds = 300
			var cmds []*exec.Cmd
			for p := 0; p < 2; p++ {
				c := exec.Command(semc, "mutex", name, strconv.Itoa(rounds), log)
				c.Stderr = os.Stderr
				g := helperCmd(t, "mutex", name, strconv.Itoa(rounds), log, fmt.Sprintf("go%d", p))
				cmds = append(cmds, c, g)
			}
			for _, c := range cmds {
				if err := c.Start(); err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range cmds {
				if err := c.Wait(); err != nil {
					t.Fatalf("%s: %v", c.Path, err)
				}
			}
			counts := checkCriticalSections(t, log)
			if counts["C"] != 2*rounds || counts["go0"] != rounds || counts["go1"] != rounds {
				t.Errorf("sections per side: %v", counts)
			}
			out, err := exec.Command(semc, "value", name).Output()
			if err != nil || strings.TrimSpace(string(out)) != "1" {
				t.Errorf("sem_getvalue after: %q, %v; want 1", out, err)
			}
			path, _ := SemPath(name)
			raw, _ := os.ReadFile(path)
			if d := binary.LittleEndian.Uint64(raw); d != 1 {
				t.Errorf("data word after = %#x, want 1 (value 1, no waiters)", d)
			}
		})
	}
}

// The leak check of TestMain must see a semaphore left behind (negative
// control): here one is left on purpose under another prefix, found, then
// removed.
func TestLeakCheckCatchesLeak(t *testing.T) {
	prefix := testPrefix + "control."
	if got := leakedObjects(prefix); len(got) != 0 {
		t.Fatalf("before: %v", got)
	}
	s, err := Create("/"+prefix+"leaked", 1)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	got := leakedObjects(prefix)
	if len(got) != 1 || got[0] != ShmDir+"/sem."+prefix+"leaked" {
		t.Errorf("leak check found %v, want the leaked semaphore", got)
	}
	Unlink("/" + prefix + "leaked")
	if got := leakedObjects(prefix); len(got) != 0 {
		t.Errorf("after unlink: %v", got)
	}
}
