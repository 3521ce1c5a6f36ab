package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ipcflow/ipcflow/contain"
	"github.com/ipcflow/ipcflow/mqueue"
	"golang.org/x/sys/unix"
)

// TestImportedOnlyByTests holds the package to its doc comment: no
// package of the module imports it outside its tests.
func TestImportedOnlyByTests(t *testing.T) {
	const self = "github.com/ipcflow/ipcflow/internal/testkit"
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "../../...").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		for _, imp := range f[1:] {
			if imp == self {
				t.Errorf("%s imports %s outside its tests", f[0], self)
			}
		}
	}
}

// TestKernelObjectsCatchesLeaks is the negative control of the scan the
// leak checks build on: a segment, a semaphore, a queue (where
// /dev/mqueue is mounted) and a run's cgroup (where one may be made),
// left on purpose under a prefix, are found; an object under another
// prefix is not.
func TestKernelObjectsCatchesLeaks(t *testing.T) {
	prefix := fmt.Sprintf("ipcflow.testkit%d.", os.Getpid())
	other := fmt.Sprintf("ipcflow.testkit%dx.", os.Getpid())
	if got, err := KernelObjects(prefix); err != nil || len(got) != 0 {
		t.Fatalf("before: %v, %v", got, err)
	}
	want := []string{"/dev/shm/" + prefix + "e1", "/dev/shm/sem." + prefix + "s1"}
	for _, f := range append(want, "/dev/shm/"+other+"e1", "/dev/shm/sem."+other+"s1") {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(f)
	}
	q := "/" + prefix + "e2"
	if fd, err := mqueue.Open(q, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, 1, 16); err == nil {
		unix.Close(fd)
		defer mqueue.Unlink(q)
		if _, err := os.Stat("/dev/mqueue" + q); err == nil {
			want = append(want, "/dev/mqueue"+q)
		}
	}
	if place, ok := contain.Find(); ok {
		cg := filepath.Join(place.Parent, prefix+"procs")
		if err := os.Mkdir(cg, 0o755); err == nil {
			defer os.Remove(cg)
			want = append(want, cg)
		}
	}
	got, err := KernelObjects(prefix)
	sort.Strings(want)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("found %v, %v; want %v", got, err, want)
	}
	t.Logf("found %v", got)
}

// TestLeakCheckCatchesALeak is the negative control: what a run (seen by
// its directory) leaves must be reported, and another run's objects not.
func TestLeakCheckCatchesALeak(t *testing.T) {
	base := t.TempDir()
	check := RunLeaks(base)
	id := fmt.Sprintf("deadbeef%08x", os.Getpid())
	os.MkdirAll(filepath.Join(base, "ipcflow", id), 0o700)
	time.Sleep(20 * time.Millisecond) // the poller sees the run
	ours := "/dev/shm/ipcflow." + id + ".e1"
	theirs := fmt.Sprintf("/dev/shm/ipcflow.0ther%08x.e1", os.Getpid())
	for _, f := range []string{ours, theirs} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Skipf("no /dev/shm: %v", err)
		}
		defer os.Remove(f)
	}
	want := []string{ours, filepath.Join(base, "ipcflow", id)}
	if place, ok := contain.Find(); ok {
		cg := filepath.Join(place.Parent, "ipcflow."+id+".procs")
		if err := os.Mkdir(cg, 0o755); err == nil {
			defer os.Remove(cg)
			want = append(want, cg)
		}
	}
	leaked := check()
	sort.Strings(leaked)
	sort.Strings(want)
	if strings.Join(leaked, " ") != strings.Join(want, " ") {
		t.Fatalf("leak check found %v, want %v", leaked, want)
	}
}
