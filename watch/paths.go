package watch

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fsnotify/fsnotify"

	"github.com/ipcflow/ipcflow/rundir"
)

// watcher turns fsnotify's events into changes. It watches directories,
// never bare files: an editor that saves by writing a new file and
// renaming it over the old one (vim, VS Code, JetBrains, sed -i) replaces
// the file, and a watch on the old file would see it deleted and nothing
// after. So a file is watched through its directory, with only events
// that name it counting; a directory (--on DIR) is watched with all its
// subdirectories, those made later included.
type watcher struct {
	fs      *fsnotify.Watcher
	files   map[string][]string // directory -> the names in it that count
	trees   []string            // --on directories
	ignored []string            // the runs' own base directories
}

// newWatcher watches script and each of on. A path that is not there is
// an error: there would be nothing to watch.
func newWatcher(script string, on []string) (*watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, limitError("", err)
	}
	w := &watcher{fs: fw, files: map[string][]string{}}
	for _, b := range rundir.Bases() {
		w.ignored = append(w.ignored, filepath.Clean(b))
	}
	for i, p := range append([]string{script}, on...) {
		if err := w.add(p, i > 0); err != nil {
			fw.Close()
			return nil, err
		}
	}
	return w, nil
}

func (w *watcher) close() { w.fs.Close() }

// add watches path: a file through its directory, a directory (allowed
// for --on only) with its subdirectories.
func (w *watcher) add(path string, dirOK bool) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("watch: %s: %w", path, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("watch: %s: %w", path, err)
	}
	if !fi.IsDir() {
		dir, name := filepath.Split(abs)
		dir = filepath.Clean(dir)
		if _, watched := w.files[dir]; !watched {
			if err := w.fs.Add(dir); err != nil {
				return limitError(dir, err)
			}
		}
		w.files[dir] = append(w.files[dir], name)
		return nil
	}
	if !dirOK {
		return fmt.Errorf("watch: %s is a directory, not a script", path)
	}
	w.trees = append(w.trees, abs)
	return w.addTree(abs)
}

// addTree watches dir and every directory below it but the ignored ones.
func (w *watcher) addTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// Gone already, or unreadable: nothing in it to watch.
			return filepath.SkipDir
		}
		if !d.IsDir() {
			return nil
		}
		if p != dir && w.ignores(p) {
			return filepath.SkipDir
		}
		if err := w.fs.Add(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return limitError(p, err)
		}
		return nil
	})
}

// counts reports whether ev is a change that calls for a new run, and
// watches a directory made inside a watched tree. Every kind of event
// counts, a change of attributes too: `touch FILE` is how a user asks
// for a run without editing anything (entr counts it as well).
func (w *watcher) counts(ev fsnotify.Event) (bool, error) {
	dir, name := filepath.Split(ev.Name)
	if slices.Contains(w.files[filepath.Clean(dir)], name) {
		return true, nil
	}
	if !w.inTree(ev.Name) || w.ignores(ev.Name) {
		return false, nil
	}
	if ev.Has(fsnotify.Create) {
		if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
			// Files made in it before its watch was added are not
			// seen, but the directory's own creation is a change.
			if err := w.addTree(ev.Name); err != nil {
				return false, err
			}
		}
	}
	return true, nil
}

// inTree reports whether path is in one of the --on directories.
func (w *watcher) inTree(path string) bool {
	for _, t := range w.trees {
		if within(path, t) {
			return true
		}
	}
	return false
}

// ignores reports whether path is noise: in a runs' base directory, or
// with a name (of itself or a directory above it, inside the tree) that
// version control or an editor uses for its own files.
func (w *watcher) ignores(path string) bool {
	for _, b := range w.ignored {
		if within(path, b) {
			return true
		}
	}
	for _, t := range w.trees {
		if rel, err := filepath.Rel(t, path); err == nil && within(path, t) {
			for _, part := range strings.Split(rel, string(filepath.Separator)) {
				if noise(part) {
					return true
				}
			}
		}
	}
	return false
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+string(filepath.Separator))
}

// vcsDirs are version control systems' own directories.
var vcsDirs = []string{".git", ".hg", ".svn", ".bzr", "_darcs", "CVS", ".jj"}

// noise reports whether a file or directory name is one that version
// control or an editor keeps for itself (docs/watch.md lists them).
func noise(name string) bool {
	swap, _ := filepath.Match(".*.sw[a-z]", name) // vim's swap files: .x.swp, .x.swo, .x.swx
	return slices.Contains(vcsDirs, name) ||
		swap ||
		name == "4913" || // vim's probe of whether it may write in a directory
		strings.HasSuffix(name, "~") || // backups: vim, emacs, gedit
		(len(name) > 1 && strings.HasPrefix(name, "#") && strings.HasSuffix(name, "#")) || // emacs's auto-save
		strings.HasPrefix(name, ".#") || // emacs's lock
		strings.HasSuffix(name, "___jb_tmp___") || strings.HasSuffix(name, "___jb_old___") // JetBrains' safe write
}
