// Package fileid knows a file by its identity (device, inode, type) and
// removes a path only while it still names that file. The edge types use
// it for the FIFOs, files and segments they make, the run directory for
// its manifest and `ipcflow clean`.
package fileid

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// A run removes only what it made. A path alone does not say that: while a
// flow runs, or after a crash before `ipcflow clean`, the name may have been
// given to another file, or a directory on the way swapped for a symlink to
// somewhere else. So every path object is known by its identity (device,
// inode and type, taken when it was made and kept in the run's manifest),
// and removed through its parent directory opened without following any
// symlink, only if the entry there is still that identity.
//
// What stays is the moment between the check and unlinkat(2): Linux has no
// "unlink this inode", so a rename exactly then could still be hit. Both
// calls are on the same directory fd, so no symlink can redirect them.

// Identity is what a file is known by: its device, inode and type
// (st_mode & S_IFMT).
type Identity struct {
	Dev, Ino uint64
	Type     uint32
}

// IdentityOf is st's identity.
func IdentityOf(st *unix.Stat_t) Identity {
	return Identity{Dev: st.Dev, Ino: st.Ino, Type: st.Mode & unix.S_IFMT}
}

// FdIdentity is the identity of the file open at fd.
func FdIdentity(fd int) (Identity, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Identity{}, err
	}
	return IdentityOf(&st), nil
}

// String is the identity as the manifest keeps it: "dev:ino:type".
func (id Identity) String() string { return fmt.Sprintf("%d:%d:%o", id.Dev, id.Ino, id.Type) }

// ParseIdentity reads an identity written by String.
func ParseIdentity(s string) (Identity, error) {
	var id Identity
	if _, err := fmt.Sscanf(s, "%d:%d:%o", &id.Dev, &id.Ino, &id.Type); err != nil {
		return Identity{}, fmt.Errorf("bad identity %q: %w", s, err)
	}
	return id, nil
}

// ErrReplaced says that a path no longer names the object the run made.
var ErrReplaced = errors.New("not the object the run made (replaced since)")

// OpenDirNoFollow opens directory dir (absolute) for use as a dirfd,
// refusing a symlink in any of its components. openat2's
// RESOLVE_NO_SYMLINKS does it in one call; where the kernel (before 5.6)
// or a seccomp filter lacks it, the path is walked one component at a time
// with O_NOFOLLOW. The fd is O_PATH: it needs only search permission.
func OpenDirNoFollow(dir string) (int, error) {
	return openDirNoFollow(dir, unix.O_PATH)
}

// OpenDirToReadNoFollow is OpenDirNoFollow for a directory whose entries
// are then listed.
func OpenDirToReadNoFollow(dir string) (int, error) {
	return openDirNoFollow(dir, unix.O_RDONLY)
}

func openDirNoFollow(dir string, mode int) (int, error) {
	if !filepath.IsAbs(dir) {
		return -1, fmt.Errorf("open directory %s: path is not absolute", dir)
	}
	flags := uint64(mode | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC)
	fd, err := unix.Openat2(unix.AT_FDCWD, dir, &unix.OpenHow{Flags: flags, Resolve: unix.RESOLVE_NO_SYMLINKS})
	if err == nil {
		return fd, nil
	}
	if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) {
		return -1, fmt.Errorf("open directory %s without following symlinks: %w", dir, err)
	}
	// Every component but the last needs only to be searched.
	walk := unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	comps := strings.Split(strings.TrimPrefix(filepath.Clean(dir), "/"), "/")
	if comps[0] == "" {
		return unix.Open("/", int(flags), 0)
	}
	fd, err = unix.Open("/", walk, 0)
	if err != nil {
		return -1, fmt.Errorf("open /: %w", err)
	}
	for i, c := range comps {
		f := walk
		if i == len(comps)-1 {
			f = int(flags)
		}
		next, err := unix.Openat(fd, c, f, 0)
		unix.Close(fd)
		if err != nil {
			return -1, fmt.Errorf("open directory %s without following symlinks: %s: %w", dir, c, err)
		}
		fd = next
	}
	return fd, nil
}

// StatNoFollow is the identity of path's last component, reached without
// following any symlink; ok is false when nothing is there.
func StatNoFollow(path string) (st unix.Stat_t, ok bool, err error) {
	dfd, err := OpenDirNoFollow(filepath.Dir(path))
	if errors.Is(err, unix.ENOENT) {
		return st, false, nil
	}
	if err != nil {
		return st, false, err
	}
	defer unix.Close(dfd)
	err = unix.Fstatat(dfd, filepath.Base(path), &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return st, false, nil
	}
	return st, err == nil, err
}

// RemoveIfSame removes path if it still is the object id names. Nothing
// there is fine; something else there is ErrReplaced and stays. A
// directory on the way that became a symlink is an error and nothing is
// removed.
func RemoveIfSame(path string, id Identity) error {
	dfd, err := OpenDirNoFollow(filepath.Dir(path))
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	defer unix.Close(dfd)
	if err := RemoveAtIfSame(dfd, filepath.Base(path), id); err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// RemoveAtIfSame removes entry name of directory dfd if it is still id
// (an empty directory when id is one).
func RemoveAtIfSame(dfd int, name string, id Identity) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	if IdentityOf(&st) != id {
		return ErrReplaced
	}
	flags := 0
	if id.Type == unix.S_IFDIR {
		flags = unix.AT_REMOVEDIR
	}
	if err := unix.Unlinkat(dfd, name, flags); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// CanonicalPath is path with its directory's symlinks resolved (the last
// component is kept as it is): the form a run records, so that removing it
// later, with no symlink followed, reaches the same place.
func CanonicalPath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	dir, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, filepath.Base(abs)), nil
}
