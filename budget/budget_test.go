package budget

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestPlanSize(t *testing.T) {
	const soft = 16384
	for _, c := range []struct {
		n          int
		want, free int64
		size       int64
		warn       string
	}{
		{1, 64 << 10, soft, 64 << 10, ""},
		{100, 64 << 10, soft, 64 << 10, ""},                       // 1600 of 14336 usable pages
		{500, 64 << 10, soft, 64 << 10, ""},                       // 28 pages each: room for 16
		{500, 1 << 20, soft, 64 << 10, "500 pipes of 1 MiB"},      // but not for 256
		{1000, 64 << 10, soft, 32 << 10, "using 32 KiB per pipe"}, // 14 pages each: 8
		{100, 64 << 10, 1000, 32 << 10, "1000 of 16384 pages free"},
		{10, 64 << 10, 0, 4 << 10, "pipes this small are slow"},
		{5000, 64 << 10, soft, 8 << 10, "using 8 KiB"},
		{9000, 64 << 10, soft, 4 << 10, "slow"},
	} {
		size, warn := planSize(c.n, c.want, c.free, soft)
		if size != c.size || (c.warn == "") != (warn == "") || !strings.Contains(warn, c.warn) {
			t.Errorf("planSize(%d, %d, free %d) = %d, %q; want %d, %q", c.n, c.want, c.free, size, warn, c.size, c.warn)
		}
		if c.warn != "" && !strings.Contains(warn, "/proc/sys/fs/pipe-user-pages-soft") {
			t.Errorf("warning %q does not name the limit", warn)
		}
	}
}

func TestRoundPipeSize(t *testing.T) {
	for in, want := range map[int64]int64{1: 4096, 4096: 4096, 4097: 8192, 100_000: 131072, 1 << 20: 1 << 20} {
		if got := roundPipeSize(in); got != want {
			t.Errorf("roundPipeSize(%d) = %d, want %d", in, got, want)
		}
	}
}

// The budget only binds users without CAP_SYS_RESOURCE, so the real test
// runs this test binary again as nobody (uid 65534), from root.
// TestCheckPipeSize: a size above pipe-max-size fails naming the limit,
// its value and its file; the limit itself passes.
func TestCheckPipeSize(t *testing.T) {
	err := CheckPipeSize(PipeMaxSize() + 1)
	if err == nil || !strings.Contains(err.Error(), "/proc/sys/fs/pipe-max-size") || !strings.Contains(err.Error(), sizeString(PipeMaxSize())) {
		t.Errorf("above the limit: %v, want an error naming the limit and the file", err)
	}
	if err := CheckPipeSize(PipeMaxSize()); err != nil {
		t.Errorf("at the limit: %v", err)
	}
	if err := CheckPipeSize(-1); err == nil {
		t.Error("a negative size passed")
	}
}

func TestPipeBudgetUnprivileged(t *testing.T) {
	if os.Getenv("PF_BUDGET_CHILD") != "" {
		budgetChild(t)
		return
	}
	if os.Getuid() != 0 {
		if _, exempt := PipeBudget(); exempt {
			t.Skip("exempt from the pipe budget and not root: can't run as another user")
		}
		budgetChild(t)
		return
	}
	if _, exempt := PipeBudget(); !exempt {
		t.Error("root with CAP_SYS_RESOURCE reported as bound by the budget")
	}
	// The test binary lives in a 0700 directory: copy it where nobody can
	// run it.
	dir, err := os.MkdirTemp("", "pfbudget")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "channels.test")
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(out, in)
	in.Close()
	out.Close()
	cmd := exec.Command(bin, "-test.run=^TestPipeBudgetUnprivileged$", "-test.v", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PF_BUDGET_CHILD=1", "TMPDIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	b, err := cmd.CombinedOutput()
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, "budget_test.go") {
			t.Log(strings.TrimSpace(line))
		}
	}
	if err != nil {
		t.Fatalf("as nobody: %v\n%s", err, b)
	}
}

// budgetChild runs as an unprivileged user: it measures the budget, uses
// most of it, and checks that planning keeps new pipes at the planned size
// while an unplanned default pipe past the limit is reported.
func budgetChild(t *testing.T) {
	soft := readProcInt("/proc/sys/fs/pipe-user-pages-soft", 16384)
	start := time.Now()
	free, exempt := PipeBudget()
	t.Logf("uid %d: PipeBudget = %d pages free of %d, exempt %v, measured in %v", os.Getuid(), free, soft, exempt, time.Since(start))
	if exempt {
		t.Fatal("an unprivileged user reported exempt")
	}
	if free > soft || free < soft/2 {
		t.Fatalf("free = %d pages, want close to %d for a user with no pipes", free, soft)
	}
	if size, warn := PlanPipeSize(10, 0); size != 64<<10 || warn != "" {
		t.Errorf("PlanPipeSize(10, 64 KiB) with the budget free = %d, %q", size, warn)
	}
	var held []*os.File
	defer func() {
		for _, f := range held {
			f.Close()
		}
	}()
	hold := func(size int64) error {
		r, w, err := Pipe(size)
		if err == nil {
			held = append(held, r, w)
		}
		return err
	}
	// Take all but ~1000 pages with 1 MiB pipes.
	for range (free - 1000) / 256 {
		if err := hold(1 << 20); err != nil {
			t.Fatal(err)
		}
	}
	left, _ := PipeBudget()
	t.Logf("after holding %d MiB: %d pages free", len(held)/2, left)
	if d := left - (free - (free-1000)/256*256); d < -16 || d > 16 {
		t.Errorf("measured %d pages free, want about %d", left, free-(free-1000)/256*256)
	}
	// 100 more pipes do not fit at 64 KiB each: the plan shrinks them.
	size, warn := PlanPipeSize(100, 0)
	t.Logf("PlanPipeSize(100, 64 KiB) = %s: %s", sizeString(size), warn)
	if size >= 64<<10 || warn == "" {
		t.Fatalf("plan %d, %q: want a smaller size and a warning", size, warn)
	}
	for i := range 100 {
		if err := hold(size); err != nil {
			t.Fatalf("planned pipe %d: %v", i, err)
		}
		if got, _ := PipeSize(held[len(held)-1]); got != size {
			t.Fatalf("planned pipe %d is %d bytes, want %d", i, got, size)
		}
	}
	// Now go past the limit the unplanned way: default pipes until one
	// comes out small. Pipe must say so instead of handing it out.
	var err error
	for range 2000 {
		if err = hold(0); err != nil {
			break
		}
	}
	t.Logf("a default pipe past the limit: %v", err)
	if !errors.Is(err, ErrPipeBudget) || !strings.Contains(err.Error(), "8 KiB") {
		t.Fatalf("Pipe(0) past the limit: %v, want ErrPipeBudget saying it came out at 8 KiB", err)
	}
	// Growing a pipe past the limit: EPERM, reported as the budget.
	r, w, _ := Pipe(4096)
	defer r.Close()
	defer w.Close()
	if err := SetPipeSize(w, 1<<20); !errors.Is(err, ErrPipeBudget) || !errors.Is(err, unix.EPERM) {
		t.Errorf("growing past the limit: %v, want ErrPipeBudget and EPERM", err)
	}
	// Over the limit, the plan still gives a size that can be set.
	size, warn = PlanPipeSize(10, 0)
	t.Logf("over the limit: PlanPipeSize(10, 64 KiB) = %s: %s", sizeString(size), warn)
	if err := hold(size); err != nil || warn == "" {
		t.Errorf("planned pipe over the limit: %v (warn %q)", err, warn)
	}
}
