package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/ipcflow/ipcflow/internal/testkit"
	"github.com/ipcflow/ipcflow/locks"
)

// The scripts run `ipcflow` as this test binary under that name: with
// asIpcflowEnv set it is ipcflow from init on. (No TestMain here, so that
// this file can sit beside the package's shared script runner.)
const asIpcflowEnv = "IPCFLOW_TEST_BINARY_IS_IPCFLOW"

func init() {
	if os.Getenv(asIpcflowEnv) != "1" {
		return
	}
	main()
}

// ipcflowOnPath is a directory for the front of a script's $PATH in which
// `ipcflow` is this test binary (with asIpcflowEnv set, it is ipcflow).
func ipcflowOnPath(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(self, filepath.Join(bin, "ipcflow")); err != nil {
		t.Fatal(err)
	}
	return bin
}

// lockTestPrefix starts the POSIX name of every semaphore the lock scripts
// make, so the leak check sees only theirs.
var lockTestPrefix = fmt.Sprintf("ipcflowtest.%d.", os.Getpid())

// TestLockScripts runs testdata/script/lock_*.txtar. Besides testscript's
// own commands they have:
//
//	semcreate NAME VALUE   create a semaphore (Go side), export IPCFLOW_SEM_NAME
//	semname NAME           export IPCFLOW_SEM_NAME for a semaphore a C
//	                       program will create; unlinked at the end
//	semopen NAME           open the semaphore IPCFLOW_SEM_NAME names (made
//	                       by a C program) and serve it with leases
//	semvalue NAME WANT     the value becomes WANT within 10s
//	leases                 serve leases on the script's semaphores, export
//	                       IPCFLOW_LOCK_SOCKET
//	waitfile FILE          FILE appears within 10s
//	checklog FILE TAG=N… [switches>=M]
//	                       FILE's "TAG+"/"TAG-" critical sections never
//	                       overlap, TAG had N of them, and the holder changed
//	                       at least M times
//
// $SEMC_SRC is the C program of the interop tests (locks/testdata/semc.c).
func TestLockScripts(t *testing.T) {
	bin := ipcflowOnPath(t)
	type state struct {
		sems map[string]*locks.Sem
	}
	st := func(ts *testscript.TestScript) *state { return ts.Value("lockstate").(*state) }
	posix := func(ts *testscript.TestScript, name string) string {
		return "/" + lockTestPrefix + filepath.Base(ts.MkAbs(".")) + "." + name
	}

	testscript.Run(t, testscript.Params{
		Files: globLockScripts(t),
		Setup: func(env *testscript.Env) error {
			env.Setenv("PATH", bin+string(os.PathListSeparator)+env.Getenv("PATH"))
			env.Setenv(asIpcflowEnv, "1")
			// lock_run.txtar's runs keep their run directories here.
			rt := filepath.Join(env.WorkDir, ".runtime")
			env.Setenv("XDG_RUNTIME_DIR", rt)
			if err := os.Mkdir(rt, 0o700); err != nil {
				return err
			}
			env.Values["lockstate"] = &state{sems: map[string]*locks.Sem{}}
			src, err := filepath.Abs("../../locks/testdata/semc.c")
			env.Setenv("SEMC_SRC", src)
			return err
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"semcreate": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: semcreate NAME VALUE")
				}
				v, err := strconv.ParseUint(args[1], 10, 32)
				ts.Check(err)
				name := posix(ts, args[0])
				sem, err := locks.Create(name, uint32(v))
				ts.Check(err)
				ts.Defer(func() { sem.Close(); locks.Unlink(name) })
				st(ts).sems[args[0]] = sem
				ts.Setenv(locks.SemEnv(args[0]), name)
			},
			"semname": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 1 {
					ts.Fatalf("usage: semname NAME")
				}
				name := posix(ts, args[0])
				ts.Defer(func() { locks.Unlink(name) })
				ts.Setenv(locks.SemEnv(args[0]), name)
			},
			"semopen": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 1 {
					ts.Fatalf("usage: semopen NAME")
				}
				sem, err := locks.Open(ts.Getenv(locks.SemEnv(args[0])))
				ts.Check(err)
				ts.Defer(func() { sem.Close() })
				st(ts).sems[args[0]] = sem
			},
			"semvalue": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: semvalue NAME WANT")
				}
				sem, err := locks.Open(ts.Getenv(locks.SemEnv(args[0])))
				ts.Check(err)
				defer sem.Close()
				want, _ := strconv.Atoi(args[1])
				for i := 0; sem.Value() != want; i++ {
					if i == 1000 {
						ts.Fatalf("semaphore %s: value %d, want %d", args[0], sem.Value(), want)
					}
					time.Sleep(10 * time.Millisecond)
				}
			},
			"leases": func(ts *testscript.TestScript, neg bool, args []string) {
				sock := ts.MkAbs("lock.sock")
				srv, err := locks.ServeLeases(sock, st(ts).sems)
				ts.Check(err)
				ts.Defer(func() { srv.Close() })
				ts.Setenv(locks.LockSocketEnv, sock)
			},
			"waitfile": func(ts *testscript.TestScript, neg bool, args []string) {
				for i := 0; ; i++ {
					if _, err := os.Stat(ts.MkAbs(args[0])); err == nil {
						return
					}
					if i == 1000 {
						ts.Fatalf("%s did not appear in 10s", args[0])
					}
					time.Sleep(10 * time.Millisecond)
				}
			},
			"checklog": cmdChecklog,
		},
	})

	left, _ := testkit.KernelObjects(lockTestPrefix)
	for _, p := range left {
		t.Errorf("leak: %s left by the lock scripts", p)
		os.Remove(p)
	}
}

func globLockScripts(t *testing.T) []string {
	files, err := filepath.Glob("testdata/script/lock_*.txtar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no lock scripts: %v", err)
	}
	return files
}

// cmdChecklog: checklog FILE TAG=N... [switches>=M]
func cmdChecklog(ts *testscript.TestScript, neg bool, args []string) {
	f, err := os.Open(ts.MkAbs(args[0]))
	ts.Check(err)
	defer f.Close()
	counts := map[string]int{}
	holder, last, switches := "", "", 0
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			ts.Fatalf("line %d: empty", n)
		}
		tag, mark := line[:len(line)-1], line[len(line)-1]
		switch {
		case mark == '+' && holder == "":
			holder = tag
			if last != "" && tag != last {
				switches++
			}
			last = tag
		case mark == '-' && holder == tag:
			holder = ""
			counts[tag]++
		default:
			ts.Fatalf("line %d: %q while %q holds the semaphore: critical sections overlap", n, line, holder)
		}
	}
	if holder != "" {
		ts.Fatalf("log ends inside %s's critical section", holder)
	}
	for _, a := range args[1:] {
		if min, ok := strings.CutPrefix(a, "switches>="); ok {
			if m, _ := strconv.Atoi(min); switches < m {
				ts.Fatalf("the holder changed %d times, want at least %s: the sides did not alternate", switches, min)
			}
			ts.Logf("holder changed %d times", switches)
			continue
		}
		tag, want, _ := strings.Cut(a, "=")
		if strconv.Itoa(counts[tag]) != want {
			ts.Fatalf("%s had %d critical sections, want %s (all: %v)", tag, counts[tag], want, counts)
		}
	}
}
