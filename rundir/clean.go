package rundir

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/channels"
	"github.com/ipcflow/ipcflow/fileid"
	"github.com/ipcflow/ipcflow/locks"
)

// hasLock reports whether the run in dir has made its lock: its manifest,
// or the lock file of an earlier version.
func hasLock(dir string) bool {
	for _, name := range []string{manifestFile, lockFile} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			return true
		}
	}
	return false
}

// isDead reports whether no process holds the lock of the run in dir:
// its manifest's (its lock file's, for a run of an earlier version). A run
// directory with no manifest yet is dead only once it is old: a run makes
// its manifest a moment after its directory.
func isDead(dir string) (bool, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		f, err = os.OpenFile(filepath.Join(dir, manifestFile), os.O_RDONLY, 0)
	}
	if errors.Is(err, os.ErrNotExist) {
		fi, serr := os.Stat(dir)
		if serr != nil {
			return true, nil
		}
		return time.Since(fi.ModTime()) > 10*time.Second, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, nil // closing f lets the lock go
}

// Bases are the places a run of this user may have made its directory:
// the current one, and the temp-directory fallback of a session without
// XDG_RUNTIME_DIR. A live run found in either is spared by Clean; watch
// ignores changes there (a run's own files are no change to its inputs).
func Bases() []string {
	tmp := tempRunBase()
	if b := runBase(); b != tmp {
		return []string{b, tmp}
	}
	return []string{tmp}
}

// Clean removes what runs that are no longer alive left behind: the objects
// their manifests list and their directories, then any object named
// ipcflow.<id>.* (in /dev/shm, /dev/mqueue) of this user whose run is not
// alive. With dryRun it only says what it would remove. Each removal is one
// line on w; nothing is printed when there is nothing to do.
func Clean(w io.Writer, dryRun bool) error {
	verb := "removed"
	if dryRun {
		verb = "would remove"
	}
	var errs []error
	live := map[string]bool{}
	named := map[string]bool{} // said already (a dry run removes nothing the stray scan could miss)
	for _, base := range Bases() {
		if _, err := os.Lstat(base); errors.Is(err, os.ErrNotExist) {
			continue
		}
		// Someone else's base (made first in a shared temp directory)
		// could list anyone's files in its manifests.
		if err := checkBase(base); err != nil {
			errs = append(errs, fmt.Errorf("%w; not cleaned", err))
			continue
		}
		entries, err := os.ReadDir(base)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("read %s: %w", base, err))
		}
		for _, e := range entries {
			if !e.IsDir() || !isID(e.Name()) {
				continue
			}
			dir := filepath.Join(base, e.Name())
			dead, err := isDead(dir)
			if err != nil {
				errs = append(errs, fmt.Errorf("check run %s: %w", dir, err))
				continue
			}
			if !dead {
				live[e.Name()] = true
				continue
			}
			d, err := readDeadRun(dir)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, o := range d.objs {
				o, gone, kept := inspect(o, dir)
				switch {
				case gone:
				case kept != "":
					fmt.Fprintf(w, "kept %s %s: %s\n", o.kind, o.name, kept)
					named[o.name] = true
				default:
					fmt.Fprintf(w, "%s %s %s\n", verb, o.kind, o.name)
					named[o.name] = true
				}
			}
			fmt.Fprintf(w, "%s run directory %s\n", verb, dir)
			if !dryRun {
				if err := d.remove(); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	for _, o := range strayObjects(live) {
		if named[o.name] {
			continue
		}
		fmt.Fprintf(w, "%s %s %s\n", verb, o.kind, o.name)
		if !dryRun {
			if err := removeObject(o); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// isID reports whether s looks like a run id: 16 lowercase hex digits.
func isID(s string) bool {
	if len(s) != 16 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// strayObjects lists this user's objects named after a run that is not
// alive: what a run left when its directory went missing (a temp cleaner,
// a crash before the manifest line was flushed to a lost disk). A run not
// seen in the bases scanned may still be alive elsewhere (another
// XDG_RUNTIME_DIR or TMPDIR): its ipcflow, holding its manifest, or its
// guardian says so (procOwners), and each of its objects is spared. Its
// semaphores, the only objects that keep their names for a whole run (shm
// segments and queues are unlinked as soon as ipcflow holds both ends),
// say so through their creator's lock too.
func strayObjects(live map[string]bool) []object {
	alive := liveness(live)
	var out []object
	scan := func(dir, strip, kind string, name func(entry string) string) {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			rest, ok := strings.CutPrefix(e.Name(), strip)
			if !ok {
				continue
			}
			id, _, _ := strings.Cut(rest, ".")
			var st unix.Stat_t
			if !isID(id) || unix.Lstat(filepath.Join(dir, e.Name()), &st) != nil || int(st.Uid) != os.Getuid() ||
				alive(id) {
				continue
			}
			o := object{kind: kind, name: name(e.Name())}
			if kind == channels.KindShm {
				o.id = fileid.IdentityOf(&st) // removed only while it is this one
			}
			if kind == channels.KindSem && locks.InUse(o.name) {
				// Its run lives, with its directory where this clean
				// does not look (another XDG_RUNTIME_DIR or TMPDIR).
				continue
			}
			out = append(out, o)
		}
	}
	scan("/dev/shm", "ipcflow.", channels.KindShm, func(n string) string { return "/dev/shm/" + n })
	scan("/dev/shm", "sem.ipcflow.", channels.KindSem, func(n string) string { return "/" + strings.TrimPrefix(n, "sem.") })
	scan("/dev/mqueue", "ipcflow.", channels.KindMQ, func(n string) string { return "/" + n })
	return append(out, strayCgroups(alive)...)
}

// ErrLocked is what Reclaim returns when the run's lock stays taken: its
// ipcflow (or a child caught between fork and exec) still holds it.
var ErrLocked = errors.New("still locked; left for 'ipcflow clean'")

// Reclaim removes what the dead run in dir left once the run's lock is
// free, waiting up to wait for it: ipcflow's lock goes with its last fd,
// and a child caught between fork and exec may hold it a moment longer.
// The guardian calls it after a crash.
func Reclaim(dir string, wait time.Duration) error {
	// Called once the run's ipcflow is gone, so a directory with no lock
	// yet (neither manifest nor lock file) is one it made and died before
	// it could lock, as a SIGTERM in its first milliseconds does: nobody
	// will lock it now, and clean would leave it for 10 s. None at all:
	// it died before making it.
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if !hasLock(dir) {
		return removeDead(dir)
	}
	if !waitForLock(dir, wait) {
		return fmt.Errorf("run %s %w", dir, ErrLocked)
	}
	return removeDead(dir)
}

// waitForLock reports whether the run's lock could be taken (its owner is
// dead) within d. The lock is let go at once: the run is dead for good.
func waitForLock(dir string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		dead, err := isDead(dir)
		if err != nil || dead {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
