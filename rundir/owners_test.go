package rundir

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// startFakeGuardian starts a process whose argv is that of the guardian
// of a run in dir (ipcflow __ipcflow_internal guard DIR); stop ends it.
func startFakeGuardian(t *testing.T, dir string) (stop func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], InternalMarker, GuardRole, dir)
	cmd.Env = append(os.Environ(), guardEnv+"=1")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil { // returns once it has exec'd
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			in.Close()
			cmd.Wait()
		}
	}
	t.Cleanup(stop)
	return stop
}

// holdManifest opens a manifest in a run directory named id, elsewhere
// (where clean does not look), as a live run's ipcflow holds it; release
// closes it. With gone, the directory is removed meanwhile (a temp
// cleaner): the run is alive all the same.
func holdManifest(t *testing.T, id string, gone bool) (release func()) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, manifestFile))
	if err != nil {
		t.Fatal(err)
	}
	if gone {
		os.RemoveAll(dir)
	}
	t.Cleanup(func() { f.Close() })
	return func() { f.Close() }
}

// A run is alive, wherever its directory is, while its ipcflow holds its
// manifest or its guardian lives; neither is, once they are gone.
func TestProcOwners(t *testing.T) {
	held := fmt.Sprintf("00a1%012x", os.Getpid())
	deleted := fmt.Sprintf("00a2%012x", os.Getpid())
	guarded := fmt.Sprintf("00a3%012x", os.Getpid())
	release := holdManifest(t, held, false)
	releaseDeleted := holdManifest(t, deleted, true)
	stop := startFakeGuardian(t, filepath.Join(t.TempDir(), guarded))
	owners := procOwners()
	for _, id := range []string{held, deleted, guarded} {
		if !owners[id] {
			t.Errorf("run %s not seen alive; procOwners() = %v", id, owners)
		}
	}
	release()
	releaseDeleted()
	stop()
	owners = procOwners()
	for _, id := range []string{held, deleted, guarded} {
		if owners[id] {
			t.Errorf("run %s still seen alive once its processes are gone", id)
		}
	}
}

// Named objects of a run whose directory clean does not see are spared
// while the run lives (its ipcflow holds its manifest, or its guardian
// lives), and removed once it is gone.
func TestCleanSparesObjectsOfALiveRunElsewhere(t *testing.T) {
	privateRunBase(t)
	byFd := fmt.Sprintf("00b1%012x", os.Getpid())
	byGuard := fmt.Sprintf("00b2%012x", os.Getpid())
	var shms []string
	for _, id := range []string{byFd, byGuard} {
		shm := "/dev/shm/ipcflow." + id + ".e1"
		if err := os.WriteFile(shm, nil, 0o600); err != nil {
			t.Skipf("no /dev/shm here: %v", err)
		}
		defer os.Remove(shm)
		shms = append(shms, shm)
	}
	release := holdManifest(t, byFd, true)
	stop := startFakeGuardian(t, filepath.Join(t.TempDir(), byGuard))
	var out bytes.Buffer
	if err := Clean(&out, false); err != nil {
		t.Fatal(err)
	}
	for _, shm := range shms {
		if !exists(shm) || strings.Contains(out.String(), shm) {
			t.Fatalf("clean removed %s of a live run:\n%s", shm, out.String())
		}
	}
	release()
	stop()
	out.Reset()
	if err := Clean(&out, false); err != nil {
		t.Fatal(err)
	}
	for _, shm := range shms {
		if exists(shm) || !strings.Contains(out.String(), "removed shm "+shm) {
			t.Errorf("clean left %s of a dead run, or did not say so:\n%s", shm, out.String())
		}
	}
}
