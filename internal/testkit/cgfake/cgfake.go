// Package cgfake stands in for the cgroup v2 file system in a plain
// directory, for the tests of contain and isolate: on a machine whose v2
// hierarchy has no controllers (these machines bind them all to v1), the
// logic that reads and writes a v2 tree is still tested, against files
// laid out as the kernel lays them out.
//
// What it imitates, and nothing more:
//
//   - Root and Group make a cgroup directory with cgroup.controllers,
//     cgroup.subtree_control and cgroup.procs as given (a root has no
//     cgroup.type, as the kernel's root has none).
//   - Kernel.Mkdir makes a child as mkdir(2) in cgroupfs does: its
//     interface files, and those of each controller it is given, which
//     are the ones enabled in the cgroup.subtree_control of it parent and
//     of every ancestor up to the root (so a controller not passed down
//     all the way gives the child no memory.max, and a write to it fails
//     as the kernel's would).
//   - Kernel.Rmdir removes a cgroup as rmdir(2) does: EBUSY while it has
//     a child or a process (a pid in its cgroup.procs).
//   - Kernel.Move moves a process as a write of its pid to cgroup.procs
//     does: out of every other group of the hierarchy, into this one;
//     EBUSY into a non-root group that passes controllers down (the
//     no-internal-process rule).
//
// A write to cgroup.subtree_control replaces the file's text here, where
// the kernel would add to the set: Mkdir reads "+memory +pids" and
// "memory pids" alike.
package cgfake

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Kernel is the fake's behaviour.
type Kernel struct {
	// NoSwap leaves memory.swap.max out of a memory group, as a kernel
	// without swap accounting does.
	NoSwap bool
}

// Root makes dir the root of a fake hierarchy: controllers is what its
// cgroup.controllers lists, enabled its cgroup.subtree_control, procs
// its cgroup.procs (pids, one a line).
func Root(dir, controllers, enabled, procs string) error {
	return group(dir, true, controllers, enabled, procs)
}

// Group makes dir a fake non-root cgroup (it has a cgroup.type), for the
// group ipcflow runs in.
func Group(dir, controllers, enabled, procs string) error {
	return group(dir, false, controllers, enabled, procs)
}

func group(dir string, root bool, controllers, enabled, procs string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := map[string]string{
		"cgroup.controllers":     controllers,
		"cgroup.subtree_control": enabled,
		"cgroup.procs":           procs,
	}
	if !root {
		files["cgroup.type"] = "domain\n"
		files["cgroup.kill"] = ""
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Mkdir makes the cgroup path as the kernel would.
func (k Kernel) Mkdir(path string) error {
	ctrls := passedDown(filepath.Dir(path))
	if err := os.Mkdir(path, 0o755); err != nil {
		return err
	}
	files := map[string]string{
		"cgroup.controllers":     strings.Join(ctrls, " ") + "\n",
		"cgroup.subtree_control": "",
		"cgroup.procs":           "",
		"cgroup.type":            "domain\n",
		"cgroup.kill":            "",
		"cgroup.events":          "populated 0\nfrozen 0\n",
	}
	for _, c := range ctrls {
		switch c {
		case "memory":
			files["memory.max"] = "max\n"
			files["memory.events"] = "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n"
			if !k.NoSwap {
				files["memory.swap.max"] = "max\n"
			}
		case "cpu":
			files["cpu.max"] = "max 100000\n"
		case "pids":
			files["pids.max"] = "max\n"
		}
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(path, name), []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// passedDown is what a new child of dir gets: the controllers enabled in
// dir's cgroup.subtree_control and in every ancestor's up to the root.
func passedDown(dir string) []string {
	var got []string
	first := true
	for {
		on := Fields(filepath.Join(dir, "cgroup.subtree_control"))
		if first {
			got, first = on, false
		} else {
			got = slices.DeleteFunc(got, func(c string) bool { return !slices.Contains(on, c) })
		}
		if _, err := os.Stat(filepath.Join(dir, "cgroup.type")); err != nil {
			return got // the root
		}
		dir = filepath.Dir(dir)
	}
}

// Fields reads a cgroup list file ("memory pids", "+memory +pids") as
// the names it holds; nil where there is no such file.
func Fields(path string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, f := range strings.Fields(string(data)) {
		if name, ok := strings.CutPrefix(f, "+"); ok || !strings.HasPrefix(f, "-") {
			out = append(out, name)
		}
	}
	return out
}

// Rmdir removes the cgroup path as the kernel would.
func (Kernel) Rmdir(path string) error {
	ents, err := os.ReadDir(path)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() {
			return unix.EBUSY
		}
	}
	if procs, _ := os.ReadFile(filepath.Join(path, "cgroup.procs")); strings.TrimSpace(string(procs)) != "" {
		return unix.EBUSY
	}
	return os.RemoveAll(path)
}

// Read returns the text of dir/file with its trailing newline cut, or
// "(none)" where there is no such file.
func Read(dir, file string) string {
	data, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return "(none)"
	}
	return strings.TrimSuffix(string(data), "\n")
}

// Move moves process pid into the cgroup dir as the kernel would.
func (Kernel) Move(dir string, pid int) error {
	if _, err := os.Stat(filepath.Join(dir, "cgroup.type")); err == nil && len(Fields(filepath.Join(dir, "cgroup.subtree_control"))) > 0 {
		return unix.EBUSY
	}
	root := dir
	for {
		if _, err := os.Stat(filepath.Join(root, "cgroup.type")); err != nil {
			break
		}
		root = filepath.Dir(root)
	}
	me := strconv.Itoa(pid)
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		procs := filepath.Join(path, "cgroup.procs")
		data, err := os.ReadFile(procs)
		if err != nil {
			return nil
		}
		var keep []string
		for _, f := range strings.Fields(string(data)) {
			if f != me {
				keep = append(keep, f)
			}
		}
		if path == dir {
			keep = append(keep, me)
		}
		text := strings.Join(keep, "\n")
		if text != "" {
			text += "\n"
		}
		return os.WriteFile(procs, []byte(text), 0o644)
	})
	return err
}
