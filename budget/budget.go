// Package budget sizes pipes and message queues within this machine's
// limits and the user's budgets: pipe-max-size and the per-user pipe
// pages (this file, pipe.go), the mqueue sysctls and RLIMIT_MSGQUEUE
// (mq.go). exec plans a run's pipes and queues with it before anything
// starts; the edge types check and make theirs through it.
package budget

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/fdio"
)

// The per-user pipe budget (fs/pipe.c). Every pipe's buffer slots (one page
// each) are charged to the user that made it. Once a user's pipes hold more
// than /proc/sys/fs/pipe-user-pages-soft pages (16384: 64 MiB), every new
// pipe that user makes gets 2 slots (8 KiB) instead of 16 (64 KiB) and
// F_SETPIPE_SZ may no longer grow a pipe (EPERM); shrinking is always
// allowed. Past pipe-user-pages-hard (0: no limit) pipe(2) fails. Small
// pipes move data about a tenth as fast, so a large flow that crosses the
// line would silently crawl. Processes with CAP_SYS_RESOURCE or
// CAP_SYS_ADMIN are exempt.
//
// The kernel does not say how much of the budget a user has used, so
// PipeBudget measures what is left by charging probe pipes until the kernel
// refuses, then closing them (about half a millisecond). For that moment
// what it measured is taken, and a pipe another process of the same user
// makes right then could come out at 8 KiB; so PlanPipeSize measures only
// as far as the flow needs, and runs that fit easily take very little.

const (
	pageSize       = 4096
	defaultPipeBuf = 16 * pageSize // PIPE_DEF_BUFFERS pages
)

// ErrPipeBudget means a pipe came out smaller than asked because the user's
// pipes already hold more than /proc/sys/fs/pipe-user-pages-soft.
var ErrPipeBudget = errors.New("per-user pipe budget exhausted (/proc/sys/fs/pipe-user-pages-soft)")

// PipeBudget reports how many pages of pipe buffer this user may still
// allocate before new pipes shrink to 8 KiB, or exempt when no budget
// applies (CAP_SYS_RESOURCE or CAP_SYS_ADMIN, or pipe-user-pages-soft is 0).
// It is a measurement of a moment: other processes of the same user draw on
// the same budget.
func PipeBudget() (pages int64, exempt bool) {
	soft := readProcInt("/proc/sys/fs/pipe-user-pages-soft", 16384)
	if soft <= 0 || pipePrivileged() {
		return soft, true
	}
	return probeBudget(soft, soft), false
}

// PipeSize is the buffer size of the pipe f belongs to (F_GETPIPE_SZ).
func PipeSize(f *os.File) (int64, error) {
	fd, err := fdio.FD(f)
	if err != nil {
		return 0, err
	}
	n, err := unix.FcntlInt(uintptr(fd), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		return 0, fmt.Errorf("get pipe size: %w", err)
	}
	return int64(n), nil
}

// PlanPipeSize chooses a buffer size for each of nPipes pipes that a flow
// is about to make, wanting want bytes each (0: the default 64 KiB), so
// that together they stay inside the user's remaining budget with an eighth
// of it left for the pipes the stages make themselves (a shell stage's
// `sort | uniq`). Sizes are powers of two pages, as the kernel rounds them.
// warn is empty when every pipe gets want; otherwise it says what was
// chosen and why, in one line for the user. Pass the size to Pipe: a size
// from the plan can always be set, since shrinking a pipe is always allowed.
func PlanPipeSize(nPipes int, want int64) (size int64, warn string) {
	if want <= 0 {
		want = defaultPipeBuf
	}
	want = roundPipeSize(want)
	if nPipes <= 0 {
		return want, ""
	}
	soft := readProcInt("/proc/sys/fs/pipe-user-pages-soft", 16384)
	if soft <= 0 || pipePrivileged() {
		return want, ""
	}
	// Enough pages for every pipe at want with the reserve on top: if the
	// probes get that far, the flow fits and there is no need to measure
	// (and briefly take) the rest.
	need := int64(nPipes)*(want/pageSize)*8/7 + 1
	free := probeBudget(soft, need)
	if free >= need {
		return want, ""
	}
	return planSize(nPipes, want, free, soft)
}

// planSize is PlanPipeSize's arithmetic, apart so tests can drive it.
func planSize(nPipes int, want, free, soft int64) (int64, string) {
	usable := free - free/8
	per := usable / int64(nPipes) // pages per pipe
	if per*pageSize >= want {
		return want, ""
	}
	size := int64(pageSize)
	if per >= 1 {
		size = pageSize << (bits.Len64(uint64(per)) - 1)
	}
	msg := fmt.Sprintf("%d pipes of %s would exceed the per-user pipe budget (%d of %d pages free, /proc/sys/fs/pipe-user-pages-soft): using %s per pipe",
		nPipes, sizeString(want), free, soft, sizeString(size))
	if per < 2 {
		msg += "; pipes this small are slow: raise the limit or split the flow"
	}
	return size, msg
}

// roundPipeSize is what the kernel makes of a requested size: a power of
// two, at least a page.
func roundPipeSize(n int64) int64 {
	if n <= pageSize {
		return pageSize
	}
	return 1 << bits.Len64(uint64(n-1))
}

// probeBudget measures the pages left under soft, or stops once it has
// found upTo: it makes pipes, shrinks each to one page (always allowed) and
// grows it as far as the kernel lets it, until a pipe can't grow at all.
// The pages the probes held is what was left. At most soft/256+2 pipes
// (1 MiB each) are needed; where pipe-max-size is so small that more would
// be, the probes stop at 512 pipes and the answer is a lower bound.
func probeBudget(soft, upTo int64) int64 {
	maxSize := max(PipeMaxSize(), 2*pageSize)
	var held []int
	defer func() {
		for _, fd := range held {
			unix.Close(fd)
		}
	}()
	var pages int64
	for range min(soft/(maxSize/pageSize)+2, 512) {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			if err == unix.EMFILE || err == unix.ENFILE {
				// Out of fds, not of pipe pages: nothing is known of
				// the budget, and the fd check says what is wrong.
				return upTo
			}
			break
		}
		held = append(held, p[0], p[1])
		if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, pageSize); err != nil {
			break
		}
		got := int64(pageSize)
		for sz := maxSize; sz > pageSize; sz /= 2 {
			if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, int(sz)); err == nil {
				got = sz
				break
			}
		}
		if got == pageSize {
			// It could not grow by a page: the user is at (or past)
			// the limit, this page included, so it isn't counted.
			break
		}
		pages += got / pageSize
		if pages >= upTo {
			break
		}
	}
	return pages
}

// pipePrivileged: the kernel's pipe_is_unprivileged_user() is false, i.e.
// the process has CAP_SYS_RESOURCE or CAP_SYS_ADMIN in the initial user
// namespace (capabilities in a user namespace of its own don't count).
func pipePrivileged() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	var eff uint64
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			eff, _ = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	if eff&(1<<unix.CAP_SYS_RESOURCE|1<<unix.CAP_SYS_ADMIN) == 0 {
		return false
	}
	m, err := os.ReadFile("/proc/self/uid_map")
	return err == nil && strings.Join(strings.Fields(string(m)), " ") == "0 0 4294967295"
}

// sizeString prints a byte count as people write it: 64 KiB, 1 MiB, 3000 B.
func sizeString(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}
