package testkit

import (
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ipcflow/ipcflow/contain"
)

// KernelObjects lists, sorted, the paths of the objects outside any run
// directory whose names begin with one of prefixes: entries of /dev/shm
// (shm segments, and semaphores, which glibc names sem.NAME, so sem. and
// a prefix counts too), of /dev/mqueue where it is mounted, and cgroups
// in the directory where contain makes a run's (contain.Find). It is the
// scan the leak checks of channels, locks, exec and cmd/ipcflow build on;
// each adds what is its own (a run directory, queues probed by name,
// which runs count). The error is /dev/shm's only: the other two places
// are often missing (no mqueue mount, no cgroup a run may make) and then
// hold nothing.
func KernelObjects(prefixes ...string) ([]string, error) {
	ents, err := os.ReadDir("/dev/shm")
	if err != nil {
		return nil, err
	}
	found := matching("/dev/shm", ents, prefixes)
	ents, _ = os.ReadDir("/dev/mqueue")
	found = append(found, matching("/dev/mqueue", ents, prefixes)...)
	if place, ok := contain.Find(); ok {
		ents, _ = os.ReadDir(place.Parent)
		found = append(found, matching(place.Parent, ents, prefixes)...)
	}
	sort.Strings(found)
	return found, nil
}

// matching is the paths in dir of the entries named with a prefix, or
// with sem. and a prefix.
func matching(dir string, ents []os.DirEntry, prefixes []string) []string {
	var found []string
	for _, e := range ents {
		name := strings.TrimPrefix(e.Name(), "sem.")
		for _, p := range prefixes {
			if strings.HasPrefix(e.Name(), p) || strings.HasPrefix(name, p) {
				found = append(found, filepath.Join(dir, e.Name()))
				break
			}
		}
	}
	return found
}
