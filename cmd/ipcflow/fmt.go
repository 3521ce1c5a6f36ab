package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/rogpeppe/go-internal/diff"

	"github.com/ipcflow/ipcflow/exec"
	"github.com/ipcflow/ipcflow/parser"
)

// FmtCmd prints scripts in the canonical layout.
type FmtCmd struct {
	Write bool     `short:"w" help:"Write the result back to each file instead of printing it."`
	Diff  bool     `short:"d" help:"Print a diff of the changes instead of the result; exit 1 when a file would change."`
	Files []string `arg:"" optional:"" name:"file" completion-predictor:"script" help:"Scripts to format (standard input when none)."`
}

// Help is shown by `ipcflow fmt --help`.
func (FmtCmd) Help() string {
	return `Print each FILE in the canonical layout: one space around '=' and arrows,
'=' aligned in runs of consecutive param, env, sem and stage lines, blank lines
cut to one, stage commands printed by the shell printer of mvdan.cc/sh, and
every comment kept in place. Formatting twice changes nothing, and the
formatted script means the same graph.

A script with syntax errors is not formatted: its errors are printed as
FILE:LINE:COL: message and the exit status is 2.`
}

func (c *FmtCmd) Run(s *Streams) error {
	if len(c.Files) == 0 {
		src, err := readStdinScript(s)
		if err != nil {
			return err
		}
		changed, err := c.one(s, parser.StdinName, src, false)
		return c.status(changed, err)
	}
	var changed bool
	var firstErr error
	for _, f := range c.Files {
		src, err := parser.ReadScript(f)
		if err != nil {
			exec.PrintParseError(s.scriptErrors(), err)
			firstErr = &ExitStatus{Code: usageStatus}
			continue
		}
		ch, err := c.one(s, f, src, c.Write)
		changed = changed || ch
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return c.status(changed, firstErr)
}

func (c *FmtCmd) status(changed bool, err error) error {
	if err != nil {
		return err
	}
	if c.Diff && changed {
		return &ExitStatus{Code: 1}
	}
	return nil
}

// one formats one script; it reports whether the layout changed.
func (c *FmtCmd) one(s *Streams, name string, src []byte, write bool) (bool, error) {
	f, err := parser.ParseAST(name, src)
	if err != nil {
		exec.PrintParseError(s.scriptErrors(), err)
		return false, &ExitStatus{Code: usageStatus}
	}
	out := parser.Format(f)
	changed := !bytes.Equal(src, out)
	if c.Diff && changed {
		if _, err := s.Stdout.Write(diff.Diff(name+".orig", src, name, out)); err != nil {
			return changed, fmt.Errorf("write the diff: %w", err)
		}
	}
	if write {
		if changed {
			if err := writeFile(name, out); err != nil {
				return changed, err
			}
		}
		return changed, nil
	}
	if !c.Diff {
		if _, err := s.Stdout.Write(out); err != nil {
			return changed, fmt.Errorf("write the result: %w", err)
		}
	}
	return changed, nil
}

// writeInPlace rewrites path's own inode, as gofmt -w does: first a
// copy of the old text beside it, kept (and named) if the write fails
// half-way, removed once it succeeded.
func writeInPlace(path string, data []byte) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	backup, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".orig.*")
	if err == nil {
		_, err = backup.Write(old)
		if cerr := backup.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(backup.Name())
		}
	}
	if err != nil {
		return fmt.Errorf("write %s: keep a copy of it first: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err == nil {
		_, err = f.Write(data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("%w (its old text is in %s)", err, backup.Name())
	}
	return os.Remove(backup.Name())
}

// writeFile replaces path's content through a temporary file in the same
// directory, so that a crash never leaves half a script; the mode is kept.
// A symlink's target is what is written (the link stays a link). A file
// with other names (hard links) or another owner is written in place, as
// gofmt -w does: a new file renamed over it would leave the other names
// with the old text, or hand the file to whoever may write the directory.
func writeFile(path string, data []byte) error {
	if target, err := filepath.EvalSymlinks(path); err == nil {
		path = target
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && (st.Nlink > 1 || int(st.Uid) != os.Geteuid()) {
		return writeInPlace(path, data)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
