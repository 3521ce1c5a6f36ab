package exec

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/ipcflow/ipcflow/parser"
)

// manyParams is a flow of one stage and n params, each but the first
// built on the one before it (param P2 = "$HOME/${P1:+set}/2"): every
// word looks variables up, and every value is about as long.
func manyParams(n int) *parser.Graph {
	b := newGraph()
	b.stage("a", "true")
	for i := range n {
		v := "v"
		if i > 0 {
			v = fmt.Sprintf(`"$HOME/${P%d:+set}/%d"`, i-1, i)
		}
		b.g.Params = append(b.g.Params, &parser.Param{Name: fmt.Sprintf("P%d", i), Value: word(v)})
	}
	return b.g
}

// BenchmarkManyParams plans a run of a flow with 1,000, 10,000 and 20,000
// params and builds its stage's process: the work of a run before it
// starts anything. Run: go test ./exec -run '^$' -bench ManyParams
func BenchmarkManyParams(b *testing.B) {
	for _, n := range []int{1000, 10000, 20000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			g := manyParams(n)
			for b.Loop() {
				p, err := buildPlan(g, nil, []string{"HOME=/h"}, false, false)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := p.Process(p.Stages[0], FlowNames{ID: "x", Dir: "/x"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestParamsCostIsLinear: planning a flow of 4 times as many params
// allocates about 4 times as many bytes, not 16 (a cost in the square of
// the count: 27 s for 20,000 params when each word rebuilt the whole
// environment). Bytes allocated are counted, not time: the machine's load
// does not change them.
func TestParamsCostIsLinear(t *testing.T) {
	allocated := func(n int) uint64 {
		g := manyParams(n)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		p, err := buildPlan(g, nil, []string{"HOME=/h"}, false, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Process(p.Stages[0], FlowNames{ID: "x", Dir: "/x"}); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	small, large := allocated(1000), allocated(4000)
	t.Logf("bytes allocated: %d for 1,000 params, %d for 4,000", small, large)
	if ratio := float64(large) / float64(small); ratio > 6 {
		t.Errorf("1,000 params allocate %d bytes, 4,000 allocate %d: %.1f times as much, want about 4", small, large, ratio)
	}
}

// planOf parses src and plans a run of it, as `ipcflow run --dry-run`
// would, with overrides, in the environment environ.
func planOf(t *testing.T, src string, environ []string, overrides ...string) (*Plan, error) {
	t.Helper()
	g, err := parser.Parse("f.ipcflow", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return buildPlan(g, overrides, environ, false, false)
}

// Option values are shell words expanded as param values are, before
// anything is created (SPEC 4): a path or a size may come from a param.
func TestOptionValuesExpand(t *testing.T) {
	src := `param DIR = $HOME/rec
param SZ = 64K
stage a = seq 3
stage b = cat
stage c = cat
a -[mmap path="$DIR/a b.rec" size=$SZ]-> b
b -[fifo size=${PIPE:-1M}]-> {c, stdout}
`
	home := t.TempDir()
	if err := os.Mkdir(home+"/rec", 0o700); err != nil {
		t.Fatal(err)
	}
	p, err := planOf(t, src, []string{"HOME=" + home}, "SZ=2M")
	if err != nil {
		t.Fatal(err)
	}
	var specs []string
	for _, w := range p.Wires {
		if !w.Internal() {
			specs = append(specs, fmt.Sprintf("%s %s %d", w.Spec.Type, w.Spec.Options.Path, w.Spec.Options.Size))
		}
	}
	want := []string{"mmap " + home + "/rec/a b.rec 2097152", "fifo  1048576", "fifo  1048576"}
	if !slices.Equal(specs, want) {
		t.Errorf("wires %q, want %q", specs, want)
	}
	// --dry-run prints the values, not the words.
	procs, err := p.Processes(FlowNames{ID: "RUNID", Dir: "RUNDIR"})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	p.Print(&out, procs)
	if !strings.Contains(out.String(), "[size=2097152 path="+home+"/rec/a b.rec]") || strings.Contains(out.String(), "$") {
		t.Errorf("dry run:\n%s", out.String())
	}
}

// A value that expands to something the option cannot take is a usage
// error at the value's position, before anything is created; so is a
// path two edges claim once expanded.
func TestOptionValuesExpandErrors(t *testing.T) {
	src := `param SZ = 64K
param A = /tmp/x.fifo
param B = /tmp/y.fifo
stage a = cat
stage b = cat
a -[pipe size=$SZ]-> {b, stdout}
a.err -[fifo path=$A]-> b
b.err -[fifo path="$B"]-> stdout
`
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"SZ=12X"}, `f.ipcflow:6:15: option size=$SZ: bad size "12X": expected bytes or a number with K, KiB, M, MiB, G or GiB`},
		{[]string{"SZ=4G", "B="}, "f.ipcflow:6:15: option size=$SZ: pipe buffer size 4G is too large (at most 2147483647 bytes)\n" +
			`f.ipcflow:8:19: option path="$B": empty path`},
		{[]string{"B=/tmp/x.fifo"}, "f.ipcflow:8:7: edge b.err -> stdout: path /tmp/x.fifo is also the path of edge a.err -> b.in (at 7:7): a path names one edge's FIFO"},
	} {
		_, err := planOf(t, src, nil, c.args...)
		var ue *UsageError
		if !errors.As(err, &ue) || !ue.Positioned || ue.Msg != c.want {
			t.Errorf("%v: got %v\nwant %s", c.args, err, c.want)
		}
	}
}

// A value written out is taken by the parser as the words of a param are
// expanded here: both must agree, quotes and backslashes included.
func TestWrittenOptionValuesAgreeWithExpansion(t *testing.T) {
	for _, v := range []string{`'a b'`, `"a\"b"`, `a\ b`, `"\$x"`, `'x\y'`, `a\\b`, `"a\b"`, `{a,b}`, `*.rec`, `"a"'b'c`, `a\]b`, `"a\` + "\n" + `b"`} {
		g, err := parser.Parse("f", []byte("stage a = cat\na -[fifo path="+v+"]-> stdout"))
		if err != nil {
			t.Errorf("%s: %v", v, err)
			continue
		}
		e := g.Edges[0]
		if len(e.Unexpanded) > 0 {
			t.Errorf("%s: left for run to expand", v)
			continue
		}
		want, err := assignValue(nil, word(v))
		if err != nil || e.Options.Path != want {
			t.Errorf("path=%s: parser takes %q, expansion gives %q (%v)", v, e.Options.Path, want, err)
		}
	}
}
