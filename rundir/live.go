package rundir

import (
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"
)

// Run is a live run of this user, as its run directory shows it.
type Run struct {
	ID  string // the run's id: its directory's name
	Dir string // its run directory
	PID int    // its ipcflow's pid, from the manifest; 0 when not yet written
}

// Live lists this user's live runs: the run directories under Bases whose
// lock is held (as Clean tells them from dead ones), sorted by id. It
// reads and changes nothing else; a base that cannot be trusted or read is
// passed over. Shell completion of `ipcflow ps RUN` uses it.
func Live() []Run {
	var runs []Run
	for _, base := range Bases() {
		if checkBase(base) != nil {
			continue
		}
		entries, _ := os.ReadDir(base)
		for _, e := range entries {
			if !e.IsDir() || !isID(e.Name()) {
				continue
			}
			dir := filepath.Join(base, e.Name())
			if !hasLock(dir) {
				continue // no manifest yet: nothing to name
			}
			if dead, err := isDead(dir); err != nil || dead {
				continue
			}
			runs = append(runs, Run{ID: e.Name(), Dir: dir, PID: livePID(dir)})
		}
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].ID < runs[j].ID })
	return runs
}

// livePID is the pid a run's manifest records, or 0.
func livePID(dir string) int {
	dfd, _, err := openDir(dir)
	if err != nil {
		return 0
	}
	defer unix.Close(dfd)
	pid, _, err := readManifest(dfd, dir)
	if err != nil {
		return 0
	}
	return pid
}
