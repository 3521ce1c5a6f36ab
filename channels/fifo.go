package channels

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/budget"
	"github.com/ipcflow/ipcflow/fileid"
)

// The fifo edge type: a named pipe. ipcflow makes it (mode 0600, never
// reusing a path that exists), opens both ends itself without blocking and
// hands them to the stages as plain fds, like a pipe.
//
// Without path= the FIFO lives in the run directory only until both ends
// are open, then its name is removed: from then on it is an anonymous pipe
// that vanishes with its last fd, so a crash can't leave it behind. With
// path= the name stays for the whole run, so that tools outside can see it,
// and Close removes it (if it is still the FIFO this run made).
func init() {
	register(Type{
		Name:     "fifo",
		Caps:     Caps{},
		Check:    checkFifo,
		Open:     openFifo,
		NotPipes: func(Options) (bool, bool) { return true, true },
	})
}

func checkFifo(o Options) error {
	if err := checkPipeSize(o); err != nil {
		return err
	}
	if o.Path != "" {
		if _, err := os.Lstat(o.Path); err == nil {
			return fmt.Errorf("fifo path %s already exists; a fifo edge creates its own and never reuses one", o.Path)
		}
		if fi, err := os.Stat(filepath.Dir(o.Path)); err != nil || !fi.IsDir() {
			return fmt.Errorf("fifo path %s: directory %s does not exist", o.Path, filepath.Dir(o.Path))
		}
	}
	return nil
}

func openFifo(env Env, spec Spec) (Channel, error) {
	path := spec.Options.Path
	if path == "" {
		if env.RunDir == "" {
			return nil, fmt.Errorf("create fifo for edge %s: no run directory", spec.ID)
		}
		path = filepath.Join(env.RunDir, env.Prefix+spec.ID+".fifo")
	}
	// Recorded with its directory's symlinks resolved: it is removed later
	// through that directory with no symlink followed (package fileid).
	path, err := fileid.CanonicalPath(path)
	if err != nil {
		return nil, fmt.Errorf("create fifo for edge %s: %w", spec.ID, err)
	}
	// An existing path is refused before it is recorded: `ipcflow clean`
	// removes what a manifest lists, and this file is not ours. (mkfifo
	// below refuses it too if it appears in between.)
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("create fifo for edge %s: %s already exists; a fifo edge creates its own and never reuses one", spec.ID, path)
	}
	if env.Record != nil {
		if err := env.Record(KindFile, path); err != nil {
			return nil, fmt.Errorf("create fifo for edge %s: %w", spec.ID, err)
		}
	}
	if err := unix.Mkfifo(path, 0o600); err != nil {
		return nil, fmt.Errorf("create fifo for edge %s: mkfifo %s: %w", spec.ID, path, err)
	}
	r, w, id, err := openFifoEnds(path)
	if err == nil {
		err = env.made(path, int(r.Fd()))
	}
	if err == nil {
		err = budget.SizePipe(w, spec.Options.Size)
	}
	if err != nil && r != nil {
		r.Close()
		w.Close()
	}
	if err != nil || spec.Options.Path == "" {
		// Both ends are open (or it failed): the name has done its job.
		// Only the FIFO made here goes: one whose ends could not be
		// opened is not known to be ours, and stays.
		if id != (fileid.Identity{}) {
			fileid.RemoveIfSame(path, id)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("create fifo for edge %s: %w", spec.ID, err)
	}
	c := &fdChannel{r: r, w: w}
	if spec.Options.Path != "" {
		c.onClose = func() error {
			if err := fileid.RemoveIfSame(path, id); err != nil && !errors.Is(err, fileid.ErrReplaced) {
				return err
			}
			return nil // another file took the name: it is not ours to remove
		}
	}
	return c, nil
}

// openFifoEnds opens path's two ends without blocking: the read end first
// with O_NONBLOCK (which never waits for a writer), then the write end
// (which does not wait, a reader being there), then the read end goes back
// to blocking, as the consuming stage expects. O_NOFOLLOW and the type
// check refuse anything but the FIFO just made (someone might have swapped
// the name in a shared directory).
func openFifoEnds(path string) (r, w *os.File, id fileid.Identity, err error) {
	rfd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, nil, id, fmt.Errorf("open %s for reading: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(rfd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		unix.Close(rfd)
		return nil, nil, id, fmt.Errorf("open %s: not the fifo ipcflow made", path)
	}
	id = fileid.IdentityOf(&st)
	wfd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		unix.Close(rfd)
		return nil, nil, id, fmt.Errorf("open %s for writing: %w", path, err)
	}
	if err := unix.SetNonblock(rfd, false); err != nil {
		unix.Close(rfd)
		unix.Close(wfd)
		return nil, nil, id, fmt.Errorf("open %s: %w", path, err)
	}
	return os.NewFile(uintptr(rfd), path), os.NewFile(uintptr(wfd), path), id, nil
}
