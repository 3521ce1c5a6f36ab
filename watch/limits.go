package watch

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// limitError turns inotify's two per-user limits into one line that names
// the sysctl to raise; other errors are said as they are. Each watched
// directory takes one of fs.inotify.max_user_watches (ENOSPC when used
// up, often by IDEs and file sync tools); each watcher one of
// fs.inotify.max_user_instances (EMFILE).
func limitError(path string, err error) error {
	var what, sysctl, also string
	switch {
	case errors.Is(err, syscall.ENOSPC):
		what, sysctl = "cannot watch "+path+": the user's inotify watches are used up", "fs.inotify.max_user_watches"
	case errors.Is(err, syscall.EMFILE):
		what, sysctl = "cannot start watching: the user's inotify instances are used up", "fs.inotify.max_user_instances"
		also = " or this process's open files (ulimit -n)" // the same errno
	default:
		if path == "" {
			return fmt.Errorf("watch: %w", err)
		}
		return fmt.Errorf("watch: %s: %w", path, err)
	}
	now := sysctlValue(sysctl)
	return fmt.Errorf("watch: %s (%s = %d)%s; raise it: sudo sysctl %s=%d (in /etc/sysctl.d/ to keep it)",
		what, sysctl, now, also, sysctl, max(4*now, 1024))
}

// sysctlValue reads an integer sysctl, 0 when it cannot.
func sysctlValue(name string) int {
	b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}
