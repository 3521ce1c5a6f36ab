package exec

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/channels"
	"github.com/ipcflow/ipcflow/contain"
	"github.com/ipcflow/ipcflow/locks"
)

// readManifest lists the objects a run directory's manifest records.
func readManifest(dir string) (pid int, objs []object, err error) {
	f, err := os.Open(filepath.Join(dir, manifestFile))
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		kind, name, ok := strings.Cut(sc.Text(), "\t")
		if !ok || name == "" {
			continue // a torn last line: nothing was created for it yet
		}
		if kind == "pid" {
			fmt.Sscan(name, &pid)
			continue
		}
		objs = append(objs, object{kind, name})
	}
	return pid, objs, sc.Err()
}

// removeObject removes one recorded object; one already gone is fine.
func removeObject(kind, name string) error {
	var err error
	switch kind {
	case channels.KindFile, channels.KindShm:
		err = unix.Unlink(name)
	case channels.KindDir:
		err = unix.Rmdir(name)
	case channels.KindSem:
		err = locks.Unlink(name)
	case channels.KindMQ:
		err = channels.UnlinkMQ(name)
	case kindCgroup:
		err = contain.Remove(name)
	default:
		return fmt.Errorf("run manifest: unknown object kind %q for %s", kind, name)
	}
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("remove %s %s: %w", kind, name, err)
}

// removeRun removes what a dead run's manifest lists, then its directory.
func removeRun(dir string) error {
	_, objs, err := readManifest(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read manifest of %s: %w", dir, err)
	}
	var errs []error
	for i := len(objs) - 1; i >= 0; i-- {
		if err := removeObject(objs[i].kind, objs[i].name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
