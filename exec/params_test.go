package exec

import (
	"fmt"
	"runtime"
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
				if _, err := p.Process(p.Stages[0], RunNames{ID: "x", Dir: "/x"}); err != nil {
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
		if _, err := p.Process(p.Stages[0], RunNames{ID: "x", Dir: "/x"}); err != nil {
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
