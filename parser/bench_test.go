package parser

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// largeScript generates a flow of n stages and 2n edges: a chain through
// every stage plus an edge from each stage to a stage further on, with a
// mix of edge types and options, multi-line commands and ports.
func largeScript(n int) []byte {
	var b strings.Builder
	b.WriteString("# generated\nparam N = 10\nsem db = 4\n")
	for i := 0; i < n; i++ {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "stage s%d (in aux) = sort -k%d \"$aux\" | uniq -c\n", i, i%9+1)
		case 1:
			fmt.Fprintf(&b, "stage s%d uses db = grep -v 'x%d' |\n  head -n \"$N\"\n", i, i)
		default:
			fmt.Fprintf(&b, "stage s%d = awk '{ print $%d }'\n", i, i%5+1)
		}
	}
	types := []string{"->", "-[fifo size=64K]->", "-[shm size=1MiB]->", "-[mq maxmsg=10]->"}
	// The chain goes into the aux port of the stages that have one, so
	// that no declared port is left unconnected (a check error).
	for i := 0; i+1 < n; i++ {
		port := ""
		if (i+1)%4 == 0 {
			port = ".aux"
		}
		fmt.Fprintf(&b, "s%d %s s%d%s\n", i, types[i%len(types)], i+1, port)
	}
	b.WriteString("stdin -> s0.aux\n")
	// The second half of the edges: from stage i's err to a stage further
	// on, into its aux port when it has one; the chain keeps the graph
	// acyclic.
	for i := 0; i < n-1; i++ {
		j := i + 1 + (i*7)%(n-1-i)
		if j%4 == 0 {
			fmt.Fprintf(&b, "s%d.err -> s%d.aux\n", i, j)
		} else {
			fmt.Fprintf(&b, "s%d.err -[pipe size=4K]-> s%d\n", i, j)
		}
	}
	fmt.Fprintf(&b, "s%d -> stdout\n", n-1)
	return []byte(b.String())
}

// BenchmarkCheckLarge parses and checks a script of 10,000 stages and
// 20,000 edges. Run: go test ./parser -run '^$' -bench CheckLarge -benchtime 5x
func BenchmarkCheckLarge(b *testing.B) {
	src := largeScript(10000)
	g, err := Parse("large.ipcflow", src)
	if err != nil {
		b.Fatal(err)
	}
	if len(g.Stages) != 10000 || len(g.Edges) != 20000 {
		b.Fatalf("generated %d stages and %d edges, want 10000 and 20000", len(g.Stages), len(g.Edges))
	}
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	var peak uint64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		if _, err := Parse("large.ipcflow", src); err != nil {
			b.Fatal(err)
		}
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		// HeapAlloc right after the parse, less what was live before:
		// the graph and the garbage the collector has not taken yet.
		if d := after.HeapAlloc - before.HeapAlloc; d > peak {
			peak = d
		}
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}

// TestRunawayQuote: a stray quote makes a command run to the end of a big
// file; finding that out must stay linear (no re-parse per line).
func TestRunawayQuote(t *testing.T) {
	var b strings.Builder
	b.WriteString("stage a = echo 'oops\n")
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&b, "stage s%d = cat\ns%d -> a\n", i, i)
	}
	src := b.String()
	_, err := Parse("f", []byte(src))
	if err == nil || !strings.Contains(err.Error(), "f:1:16: shell syntax error: reached EOF without closing quote") {
		t.Fatalf("got %v", err)
	}
}
