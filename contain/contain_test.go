package contain

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Each hierarchy the machine offers holds a process that left its parent's
// process group and session (setsid), and Close kills it and removes the
// group. Without a place to make a group (no cgroup mount ipcflow may
// write: a user without delegation), the test says so and skips.
func TestGroupHoldsWhatLeavesItsSession(t *testing.T) {
	for _, v := range []Version{V2, V1Pids} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			defer func(p Version) { prefer = p }(prefer)
			prefer = v
			p, ok := Find()
			if !ok || p.Version != v {
				t.Skipf("no cgroup v%d place this user may write here", v)
			}
			g, err := New(p, fmt.Sprintf("ipcflow.test%d", os.Getpid()))
			if err != nil {
				t.Fatal(err)
			}
			r, w, _ := os.Pipe()
			attr := &syscall.SysProcAttr{Setpgid: true}
			pid, err := g.Spawn(attr, func() (int, error) {
				return syscall.ForkExec("/bin/sh", []string{"sh", "-c", "setsid sleep 300 & echo $!; exec sleep 300"},
					&syscall.ProcAttr{Files: []uintptr{0, w.Fd(), 2}, Sys: attr})
			})
			w.Close()
			if err != nil {
				g.Close()
				t.Fatal(err)
			}
			var line [32]byte
			n, _ := r.Read(line[:])
			r.Close()
			escaped, err := strconv.Atoi(string(bytes.TrimSpace(line[:n])))
			if err != nil {
				g.Close()
				t.Fatalf("no pid from the stage: %q", line[:n])
			}
			if v == V1Pids {
				if own, _ := os.ReadFile("/proc/self/cgroup"); bytes.Contains(own, []byte(filepath.Base(g.Path))) {
					t.Errorf("ipcflow stayed in the run's group:\n%s", own)
				}
			}
			members, _ := os.ReadFile(filepath.Join(g.Path, "cgroup.procs"))
			for _, want := range []int{pid, escaped} {
				if !bytes.Contains(members, []byte(strconv.Itoa(want))) {
					t.Errorf("pid %d is not in the group (%q)", want, members)
				}
			}
			if err := g.Close(); err != nil {
				t.Fatal(err)
			}
			var ws unix.WaitStatus
			unix.Wait4(pid, &ws, 0, nil)
			deadline := time.Now().Add(2 * time.Second)
			for unix.Kill(escaped, 0) == nil && !isZombie(escaped) {
				if time.Now().After(deadline) {
					unix.Kill(escaped, unix.SIGKILL)
					t.Fatalf("the process that left its session (pid %d) outlived the group", escaped)
				}
				time.Sleep(5 * time.Millisecond)
			}
			if _, err := os.Stat(g.Path); !os.IsNotExist(err) {
				t.Errorf("the group %s is still there: %v", g.Path, err)
			}
		})
	}
}

// Remove is quiet about a group already gone (clean after the guardian).
func TestRemoveGone(t *testing.T) {
	if err := Remove(filepath.Join(t.TempDir(), "nothing")); err != nil {
		t.Fatal(err)
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", `/plain`: "/plain", `/end\04`: `/end\04`} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func isZombie(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(stat, ')')
	return i > 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}
