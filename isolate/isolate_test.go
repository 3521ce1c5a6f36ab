package isolate

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ipcflow/ipcflow/contain"
	"github.com/ipcflow/ipcflow/internal/testkit/cgfake"
	"github.com/ipcflow/ipcflow/parser"
)

// fakeRun lays out a fake cgroup v2 tree: a root that passes down what
// ipcflow's own group passes down, and the run's group in it that passes
// down passed (as contain's Delegate leaves it). It returns the root (a
// contain.Place's parent) and the run's group, and makes isolate's mkdir
// the fake kernel's.
func fakeRun(t *testing.T, k cgfake.Kernel, passed string) (root, run string) {
	t.Helper()
	m := mkdir
	mkdir = k.Mkdir
	t.Cleanup(func() { mkdir = m })
	root = filepath.Join(t.TempDir(), "root")
	run = filepath.Join(root, "ipcflow.fake.procs")
	if err := cgfake.Root(root, "cpu memory pids\n", "cpu memory pids\n", "1\n"); err != nil {
		t.Fatal(err)
	}
	if err := cgfake.Group(run, "cpu memory pids\n", passed, ""); err != nil {
		t.Fatal(err)
	}
	return root, run
}

// Where the run's v2 group can pass a controller down, the limit is
// cgroup v2's, and --dry-run's words say so; files is setrlimit's still.
func TestPlanPrefersV2(t *testing.T) {
	root, _ := fakeRun(t, cgfake.Kernel{}, "")
	ms, err := Plan(&parser.Limits{Memory: 64 << 20, CPU: 0.5, Pids: 20, Files: 64}, &contain.Place{Version: contain.V2, Parent: root})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.Resource+"="+m.Value+" by "+m.How)
	}
	want := []string{"memory=64MiB by cgroup v2 memory.max", "cpu=0.5 by cgroup v2 cpu.max", "pids=20 by cgroup v2 pids.max", "files=64 by setrlimit RLIMIT_NOFILE"}
	if !slices.Equal(got, want) {
		t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if cs := Controllers(ms); !slices.Equal(cs, []string{"memory", "cpu", "pids"}) {
		t.Errorf("Controllers = %q", cs)
	}
}

// Where v2 offers a controller but the run's group could not pass it
// down (ipcflow's own group, not the root, holds processes not
// ipcflow's: pid 1 here, a login shell in a session scope), the limit
// goes to v1 or setrlimit, never to v2, and --dry-run's words say why
// and how to get v2.
func TestPlanFallsBackFromV2(t *testing.T) {
	own := filepath.Join(t.TempDir(), "own")
	if err := cgfake.Group(own, "memory pids\n", "pids\n", "1\n"); err != nil {
		t.Fatal(err)
	}
	ms, err := Plan(&parser.Limits{Memory: 64 << 20, Pids: 20}, &contain.Place{Version: contain.V2, Parent: own})
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].V2 || !strings.HasPrefix(ms[0].How, "cgroup v1 ") && !strings.HasPrefix(ms[0].How, "setrlimit ") || !ms[1].V2 {
		t.Errorf("plan: %+v; want memory by v1 or setrlimit, pids by v2", ms)
	}
	want := "(cgroup v2: ipcflow's group " + own + " holds other processes (pid 1); run it under systemd-run --scope -p Delegate=yes)"
	if !strings.HasSuffix(ms[0].How, want) {
		t.Errorf("memory by %q; want it to end %q", ms[0].How, want)
	}
}

// Where ipcflow's own group is not the root but is delegated to it and
// holds ipcflow alone, the limits are v2's: ipcflow will leave the group
// for a leaf (contain/self.go).
func TestPlanV2InDelegatedGroup(t *testing.T) {
	own := filepath.Join(t.TempDir(), "own")
	if err := cgfake.Group(own, "cpu memory pids\n", "", strconv.Itoa(os.Getpid())+"\n"); err != nil {
		t.Fatal(err)
	}
	ms, err := Plan(&parser.Limits{Memory: 64 << 20, CPU: 0.5}, &contain.Place{Version: contain.V2, Parent: own})
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || !ms[0].V2 || !ms[1].V2 {
		t.Errorf("plan: %+v; want memory and cpu by v2", ms)
	}
}

// New makes the stage's one v2 group in the run's and writes each
// limit's file: memory.max in bytes and memory.swap.max 0 (where the
// kernel counts swap; where it does not, no error), cpu.max as "QUOTA
// PERIOD" (a quota of at least 1 ms), pids.max; Paths named it before;
// Args has it joined, and no rlimit but files.
func TestNewWritesV2Files(t *testing.T) {
	for _, k := range []cgfake.Kernel{{}, {NoSwap: true}} {
		_, run := fakeRun(t, k, "+memory +cpu +pids")
		l := &parser.Limits{Memory: 64 << 20, CPU: 0.5, Pids: 20, Files: 64}
		ms := []Mechanism{
			{Resource: "memory", V2: true}, {Resource: "cpu", V2: true}, {Resource: "pids", V2: true},
			{Resource: "files", Rlimit: 7},
		}
		const name = "ipcflow.fake.limit-r.procs"
		paths := Paths(ms, name, run)
		g, err := New(ms, l, name, run)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(run, name)
		if !slices.Equal(paths, []string{dir}) || !slices.Equal(g.Paths, paths) || g.V2 != dir {
			t.Errorf("Paths %q, the group's %q (v2 %s); want %s alone", paths, g.Paths, g.V2, dir)
		}
		swap := "0"
		if k.NoSwap {
			swap = "(none)"
		}
		for file, want := range map[string]string{"memory.max": "67108864", "memory.swap.max": swap, "cpu.max": "50000 100000", "pids.max": "20"} {
			if got := cgfake.Read(dir, file); got != want {
				t.Errorf("NoSwap %v: %s = %q, want %q", k.NoSwap, file, got, want)
			}
		}
		if args := Args(g, ms, l); !slices.Equal(args, []string{"cg=" + dir, "rl=7:64", "--"}) {
			t.Errorf("Args = %q", args)
		}
	}
	_, run := fakeRun(t, cgfake.Kernel{}, "+cpu")
	g, err := New([]Mechanism{{Resource: "cpu", V2: true}}, &parser.Limits{CPU: 0.001}, "ipcflow.fake.limit-c.procs", run)
	if err != nil {
		t.Fatal(err)
	}
	if got := cgfake.Read(g.V2, "cpu.max"); got != "1000 100000" {
		t.Errorf("cpu=0.001: cpu.max = %q, want the kernel's least quota, 1000 100000", got)
	}
}

// A controller the run's group does not pass down gives the stage's
// group no file for its limit, and New says so rather than leave the
// stage unlimited.
func TestNewFailsWithoutController(t *testing.T) {
	_, run := fakeRun(t, cgfake.Kernel{}, "+pids")
	_, err := New([]Mechanism{{Resource: "memory", V2: true}}, &parser.Limits{Memory: 1 << 20}, "ipcflow.fake.limit-m.procs", run)
	if err == nil || !strings.Contains(err.Error(), "limit memory") || !strings.Contains(err.Error(), "memory.max") {
		t.Fatalf("New without the memory controller: %v", err)
	}
}

// Killed reads memory.events' oom_kill count: true once for each rise.
func TestKilledReadsMemoryEvents(t *testing.T) {
	_, run := fakeRun(t, cgfake.Kernel{}, "+memory")
	g, err := New([]Mechanism{{Resource: "memory", V2: true}}, &parser.Limits{Memory: 1 << 20}, "ipcflow.fake.limit-m.procs", run)
	if err != nil {
		t.Fatal(err)
	}
	events := filepath.Join(g.V2, "memory.events")
	set := func(n string) {
		text := "low 0\nhigh 0\nmax 3\noom 1\noom_kill " + n + "\noom_group_kill 0\n"
		if err := os.WriteFile(events, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, step := range []struct {
		count string
		want  bool
	}{{"0", false}, {"1", true}, {"1", false}, {"3", true}} {
		set(step.count)
		if got := g.Killed(); got != step.want {
			t.Errorf("oom_kill %s: Killed = %v, want %v", step.count, got, step.want)
		}
	}
}

// A helper stage's rlimits (here RLIMIT_NPROC and RLIMIT_NOFILE) and v1
// pids group go to its programs
// (ProgramsEnv), not to the helper's own start; TakePrograms reads the
// variable back and removes it.
func TestHelperArgs(t *testing.T) {
	l := &parser.Limits{Pids: 5, Files: 64}
	ms := []Mechanism{{Resource: "pids", Rlimit: 6}, {Resource: "files", Rlimit: 7}}
	g := &Group{Paths: []string{"/cg/mem/x", "/cg/pids/x"}, pids: "/cg/pids/x"}
	args, programs := HelperArgs(g, ms, l)
	if want := []string{"cg=/cg/mem/x", "--"}; !slices.Equal(args, want) {
		t.Errorf("args %q, want %q", args, want)
	}
	if want := "pids=/cg/pids/x\nmax=5\nrl=6:5\nrl=7:64"; programs != want {
		t.Errorf("programs %q, want %q", programs, want)
	}
	t.Setenv(ProgramsEnv, programs)
	p := TakePrograms()
	if _, ok := os.LookupEnv(ProgramsEnv); ok {
		t.Error("TakePrograms left the variable set")
	}
	if p.pids != "/cg/pids/x" || p.Max() != 5 || !slices.Equal(p.RoleArgs(), []string{"rl=6:5", "rl=7:64", "--"}) || p.Env() != ProgramsEnv+"="+programs {
		t.Errorf("TakePrograms = %+v", p)
	}
}
