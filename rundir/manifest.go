package rundir

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/channels"
	"github.com/ipcflow/ipcflow/fileid"
	"github.com/ipcflow/ipcflow/locks"
	"github.com/ipcflow/ipcflow/mqueue"
)

// A manifest is lines of "key\tvalue":
//
//	pid\t<pid>                 the run's ipcflow
//	<kind>\t<name>             an object, written before it is made
//	id\t<dev:ino:type>\t<name>  its identity, written once it exists
//
// A path object is removed only while it still has the identity recorded
// (fileid/fileid.go): a name given to another file since, or reached
// through a directory swapped for a symlink, is left alone.

// object is one recorded object; id is zero until the run said what it
// made (or for kinds that have no identity: queues, semaphores).
type object struct {
	kind, name string
	id         fileid.Identity
}

// hasPath reports whether the object is a path in a file system, removed
// by identity.
func (o object) hasPath() bool {
	return o.kind == channels.KindFile || o.kind == channels.KindShm || o.kind == channels.KindDir
}

// openDir opens a run directory as a dirfd, with no symlink followed on
// the way, and checks that it can be trusted: a directory of this user
// that nobody else can write. Clean reads its manifest and removes what it
// lists; a directory someone else made or can write (in a shared temp
// directory) could list anyone's files.
func openDir(dir string) (int, unix.Stat_t, error) {
	var st unix.Stat_t
	pfd, err := fileid.OpenDirNoFollow(filepath.Dir(dir))
	if err != nil {
		return -1, st, err
	}
	defer unix.Close(pfd)
	fd, err := unix.Openat(pfd, filepath.Base(dir), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, st, err
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, st, err
	}
	if err := checkPrivate(dir, &st); err != nil {
		unix.Close(fd)
		return -1, st, err
	}
	return fd, st, nil
}

// checkPrivate refuses a file that is not this user's or that others can
// write.
func checkPrivate(path string, st *unix.Stat_t) error {
	switch {
	case int(st.Uid) != os.Getuid():
		return fmt.Errorf("%s belongs to uid %d, not to us (%d)", path, st.Uid, os.Getuid())
	case st.Mode&0o022 != 0:
		return fmt.Errorf("%s is writable by other users (mode %o)", path, st.Mode&0o777)
	}
	return nil
}

// readManifest lists the objects the manifest in run directory dfd
// records.
func readManifest(dfd int, dir string) (pid int, objs []object, err error) {
	fd, err := unix.Openat(dfd, manifestFile, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, nil, err
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir, manifestFile))
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, nil, err
	}
	if err := checkPrivate(f.Name(), &st); err != nil {
		return 0, nil, err
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		kind, name, ok := strings.Cut(sc.Text(), "\t")
		if !ok || name == "" {
			continue // a torn last line: nothing was created for it yet
		}
		switch kind {
		case "pid":
			fmt.Sscan(name, &pid)
		case "id":
			ids, path, _ := strings.Cut(name, "\t")
			id, err := fileid.ParseIdentity(ids)
			if err != nil {
				continue
			}
			for i := len(objs) - 1; i >= 0; i-- {
				if objs[i].name == path {
					objs[i].id = id
					break
				}
			}
		default:
			objs = append(objs, object{kind: kind, name: name})
		}
	}
	return pid, objs, sc.Err()
}

// inspect says what a dead run's object is now: gone (nothing to do),
// ours (o, with its identity, is to be removed) or kept (why: something
// else has the name, or nothing says it is the object the run made).
// Files in the run's own directory without an identity (a crash right
// after making one) are the run's: nobody else can write there. An shm
// name without one is too when it is this user's: the name is unguessable
// and /dev/shm is sticky.
func inspect(o object, runDir string) (cur object, gone bool, kept string) {
	if !o.hasPath() {
		if o.kind == channels.KindMQ && !mqueue.Exists(o.name) || o.kind == channels.KindSem && !semExists(o.name) {
			return o, true, ""
		}
		return o, false, ""
	}
	st, ok, err := fileid.StatNoFollow(o.name)
	switch {
	case err != nil:
		return o, false, err.Error()
	case !ok:
		return o, true, ""
	}
	now := fileid.IdentityOf(&st)
	switch {
	case o.id != (fileid.Identity{}) && now != o.id:
		return o, false, fileid.ErrReplaced.Error()
	case o.id != (fileid.Identity{}):
		return o, false, ""
	case filepath.Dir(o.name) == runDir, o.kind == channels.KindShm && int(st.Uid) == os.Getuid() && now.Type == unix.S_IFREG:
		o.id = now
		return o, false, ""
	}
	return o, false, "no identity recorded for it"
}

func semExists(name string) bool {
	path, err := locks.SemPath(name)
	if err != nil {
		return false
	}
	_, err = os.Lstat(path)
	return err == nil
}

// removeObject removes one object whose identity (for a path) is known;
// one already gone is fine, one replaced since stays (an error).
func removeObject(o object) error {
	var err error
	switch o.kind {
	case channels.KindFile, channels.KindShm, channels.KindDir:
		if o.id == (fileid.Identity{}) {
			return fmt.Errorf("remove %s %s: no identity recorded for it; left in place", o.kind, o.name)
		}
		err = fileid.RemoveIfSame(o.name, o.id)
	case channels.KindSem:
		err = locks.Unlink(o.name)
	case channels.KindMQ:
		err = mqueue.Unlink(o.name)
	case KindCgroup:
		err = removeCgroup(o.name)
	default:
		return fmt.Errorf("run manifest: unknown object kind %q for %s", o.kind, o.name)
	}
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("remove %s %s: %w", o.kind, o.name, err)
}

// deadRun is what clean and the guardian found of a dead run: its
// directory (opened, checked private) and what its manifest lists.
type deadRun struct {
	dir  string
	self fileid.Identity
	objs []object
}

// readDeadRun opens the run directory dir of a run that is no longer
// alive and reads its manifest.
func readDeadRun(dir string) (*deadRun, error) {
	fd, st, err := openDir(dir)
	if err != nil {
		return nil, fmt.Errorf("run directory %s: %w", dir, err)
	}
	defer unix.Close(fd)
	_, objs, err := readManifest(fd, dir)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("read manifest of %s: %w", dir, err)
	}
	return &deadRun{dir: dir, self: fileid.IdentityOf(&st), objs: objs}, nil
}

// remove removes the run's objects (last made first), each only if it is
// still the one the run made, then its directory.
func (d *deadRun) remove() error {
	var errs []error
	for i := len(d.objs) - 1; i >= 0; i-- {
		o, gone, kept := inspect(d.objs[i], d.dir)
		if gone || kept != "" {
			continue // kept ones are reported by whoever inspected first
		}
		if err := removeObject(o); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeTree(d.dir, d.self); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeDead removes what a dead run's manifest lists, then its directory.
func removeDead(dir string) error {
	d, err := readDeadRun(dir)
	if err != nil {
		return err
	}
	return d.remove()
}

// removeTree removes directory dir, if it is still self, with everything
// in it. Entries are removed through the directory's own fd, never by
// path, so nothing outside it can be reached.
func removeTree(dir string, self fileid.Identity) error {
	// One fd at a time: a run that failed for want of fds (ulimit -n)
	// must still be able to remove its directory.
	fd, err := fileid.OpenDirToReadNoFollow(dir)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove run directory %s: %w", dir, err)
	}
	id, err := fileid.FdIdentity(fd)
	if err == nil && id != self {
		err = fileid.ErrReplaced
	}
	if err == nil {
		err = removeEntries(fd) // closes fd
	} else {
		unix.Close(fd)
	}
	if err == nil {
		var pfd int
		if pfd, err = fileid.OpenDirNoFollow(filepath.Dir(dir)); err == nil {
			err = fileid.RemoveAtIfSame(pfd, filepath.Base(dir), self)
			unix.Close(pfd)
		}
	}
	if err != nil {
		return fmt.Errorf("remove run directory %s: %w", dir, err)
	}
	return nil
}

// removeEntries empties the directory open at fd, and closes fd.
func removeEntries(fd int) error {
	f := os.NewFile(uintptr(fd), "")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err == nil {
				err = removeEntries(sub)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				continue
			}
		}
		if err := fileid.RemoveAtIfSame(fd, name, fileid.IdentityOf(&st)); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
