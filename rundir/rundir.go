// Package rundir keeps a run's private directory and the manifest of every
// object the run makes, and removes what a dead run left behind: for the
// run itself at its end, for its guardian after a crash (Reclaim) and for
// `ipcflow clean` (Clean). It takes plain data (paths, object kinds and
// names, file identities) and knows nothing of flows or plans: exec
// imports it, never the other way round. docs/cleanup.md tells the story.
package rundir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/fileid"
)

// A run's private directory holds its FIFOs, sockets, mapped files and
// spill files, a manifest of every object the run creates anywhere (files
// here, shm objects in /dev/shm, queues, semaphores), locked (flock) by
// the run for its whole life. `ipcflow clean` tells a dead run from a live
// one by trying that lock (as iceoryx2 does), and removes what a dead run's
// manifest lists (as PostgreSQL sweeps what a dead instance left). The
// manifest is its own lock: a lock file beside it cost every run a file
// created and removed, 0.1 ms on ext4 (runs of earlier versions still
// have one, and clean still reads it).
//
//	$XDG_RUNTIME_DIR/ipcflow/<id>/      (else $TMPDIR/ipcflow-<uid>/<id>/)
//	    manifest    flock(LOCK_EX) held by the run; "pid\t<pid>" then
//	                "kind\tname" lines, appended before each object is made
//	    ...         the run's files

// Dir is one run's private directory.
type Dir struct {
	ID     string // random, unguessable: 16 hex digits
	Path   string // the directory, mode 0700
	Prefix string // "ipcflow.<ID>.": every named object of the run starts so

	self     fileid.Identity // the directory's own: only it is removed
	manifest *os.File        // holds the run's lock too
	objects  []object        // what Record listed, in order
}

const (
	lockFile     = "lock" // the lock of runs of earlier versions
	manifestFile = "manifest"
)

// runBase is the directory under which runs make their own: the user's
// runtime directory when the session has one (private, and emptied at
// logout), else a per-user directory in the temp directory.
func runBase() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return filepath.Join(realDir(d), "ipcflow")
		}
	}
	return tempRunBase()
}

// tempRunBase is the per-user fallback in the temp directory.
func tempRunBase() string {
	return filepath.Join(realDir(os.TempDir()), "ipcflow-"+strconv.Itoa(os.Getuid()))
}

// realDir is dir with its symlinks resolved (/var/run is /run): a run's
// files are removed through their directories with no symlink followed,
// so their paths must have none.
func realDir(dir string) string {
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		return r
	}
	return dir
}

// ensurePrivateDir makes dir (mode 0700) or checks that the one there is a
// real directory of ours that nobody else can write: in a shared temp
// directory another user could have made it first to watch or swap our
// files.
func ensurePrivateDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create run directory base: %w", err)
	}
	return checkBase(dir)
}

// checkBase refuses a base directory that is not a real directory of
// ours closed to everyone else.
func checkBase(dir string) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("check run directory base: %w", err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("run directory base %s is not a directory", dir)
	case int(st.Uid) != os.Getuid():
		return fmt.Errorf("run directory base %s belongs to uid %d, not to us (%d)", dir, st.Uid, os.Getuid())
	case st.Mode&0o077 != 0:
		return fmt.Errorf("run directory base %s is open to other users (mode %o); remove it or chmod 700 it", dir, st.Mode&0o777)
	}
	return nil
}

// Create is New and Dir.Create in one: a new run's directory, made,
// locked, its manifest started.
func Create() (*Dir, error) {
	d, err := New()
	if err != nil {
		return nil, err
	}
	if err := d.Create(); err != nil {
		return nil, err
	}
	return d, nil
}

// New names a new run's directory (its id, path and prefix) and makes
// sure the base it goes in is the user's own; Dir.Create makes it. A run
// names it first, so that its processes can be planned and its guardian
// started while the directory is made.
func New() (*Dir, error) {
	base := runBase()
	if err := ensurePrivateDir(base); err != nil {
		return nil, err
	}
	var raw [8]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, fmt.Errorf("make run id: %w", err)
	}
	d := &Dir{ID: hex.EncodeToString(raw[:])}
	d.Prefix = "ipcflow." + d.ID + "."
	d.Path = filepath.Join(base, d.ID)
	return d, nil
}

// Create makes the directory New named, takes its lock and starts its
// manifest. On failure nothing of it is left.
func (d *Dir) Create() error {
	if err := os.Mkdir(d.Path, 0o700); err != nil {
		return fmt.Errorf("create run directory: %w", err)
	}
	st, _, err := fileid.StatNoFollow(d.Path)
	if err != nil {
		os.Remove(d.Path) // just made, and nobody else can write the base
		return fmt.Errorf("create run directory: %w", err)
	}
	d.self = fileid.IdentityOf(&st)
	manifest, err := os.OpenFile(filepath.Join(d.Path, manifestFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err == nil {
		err = unix.Flock(int(manifest.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != nil {
			manifest.Close()
		}
	}
	if err != nil {
		err = fmt.Errorf("lock run directory: %w", err)
		return errors.Join(err, removeTree(d.Path, d.self))
	}
	d.manifest = manifest
	if _, err = fmt.Fprintf(d.manifest, "pid\t%d\n", os.Getpid()); err != nil {
		err = fmt.Errorf("start run manifest: %w", err)
		return errors.Join(err, d.Remove())
	}
	return nil
}

// Record adds an object to the manifest. Call it before creating the
// object: a crash between the two leaves a line for nothing, which clean
// skips, never an object nobody knows of. One write(2) per line on an
// O_APPEND file, so a crash never leaves half a line that means something.
func (d *Dir) Record(kind, name string) error {
	if strings.ContainsAny(name, "\n\x00") {
		return fmt.Errorf("record %s %q in run manifest: a name with a newline cannot be recorded", kind, name)
	}
	if _, err := d.manifest.WriteString(kind + "\t" + name + "\n"); err != nil {
		return fmt.Errorf("record %s %s in run manifest: %w", kind, name, err)
	}
	d.objects = append(d.objects, object{kind: kind, name: name})
	return nil
}

// Made records the identity of the object Record listed as name, now that
// it exists: it is removed, now or by a later clean, only while it still
// is that object.
func (d *Dir) Made(name string, id fileid.Identity) error {
	if _, err := d.manifest.WriteString("id\t" + id.String() + "\t" + name + "\n"); err != nil {
		return fmt.Errorf("record identity of %s in run manifest: %w", name, err)
	}
	for i := len(d.objects) - 1; i >= 0; i-- {
		if d.objects[i].name == name {
			d.objects[i].id = id
			break
		}
	}
	return nil
}

// Remove removes every object the run recorded, releases the lock, then
// removes the directory. Objects already gone (most named objects are unlinked
// as soon as both their ends are open) are not an error. Safe to call twice.
func (d *Dir) Remove() error {
	var errs []error
	for i := len(d.objects) - 1; i >= 0; i-- {
		o := d.objects[i]
		if o.hasPath() && o.id == (fileid.Identity{}) {
			// Never made, or it failed before it could be known as
			// ours; in the run directory it goes with it.
			continue
		}
		if err := removeObject(o); err != nil && !errors.Is(err, fileid.ErrReplaced) {
			errs = append(errs, err)
		}
	}
	d.objects = nil
	// The lock goes before the directory: its fd may be the one the
	// removal needs (a run that ran out of fds). A clean that takes it
	// meanwhile removes the same objects, each only while it is ours.
	if d.manifest != nil {
		d.manifest.Close()
		d.manifest = nil
	}
	if d.self != (fileid.Identity{}) {
		if err := removeTree(d.Path, d.self); err != nil {
			errs = append(errs, err)
		}
		d.self = fileid.Identity{}
	}
	return errors.Join(errs...)
}
