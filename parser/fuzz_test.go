package parser

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ipcflow/ipcflow/internal/testkit"
)

// FuzzParse: whatever the bytes, Parse returns a graph or errors that point
// into the file, never panics; a script that parses formats to one that
// parses to the same graph, and formatting is idempotent. The seed corpus
// is testdata/fuzz/FuzzParse plus the good and bad scripts, so `go test`
// runs all of them.
func FuzzParse(f *testing.F) {
	testkit.AddSeeds(f, "testdata/good/*.ipcflow", "testdata/bad/*.ipcflow")
	f.Fuzz(func(t *testing.T, src []byte) {
		// A hang is a failure too: panicking from another goroutine ends
		// the worker, and the fuzzer keeps the input that did it.
		watchdog := time.AfterFunc(10*time.Second, func() {
			panic(fmt.Sprintf("FuzzParse: no result after 10s for %q", src))
		})
		defer watchdog.Stop()
		g, err := Parse("f", src)
		if err != nil {
			list, ok := err.(ErrorList)
			if !ok {
				t.Fatalf("error is a %T, not an ErrorList: %v", err, err)
			}
			if len(list) == 0 {
				t.Fatal("empty ErrorList returned as an error")
			}
			checkErrorPositions(t, src, list)
		} else if g == nil {
			t.Fatal("nil graph and nil error")
		} else {
			if err := WriteDot(io.Discard, g); err != nil {
				t.Fatal(err)
			}
			if err := WriteMermaid(io.Discard, g); err != nil {
				t.Fatal(err)
			}
		}
		ast, err := ParseAST("f", src)
		if err != nil {
			return
		}
		out := Format(ast)
		ast2, err := ParseAST("f", out)
		if err != nil {
			t.Fatalf("formatted script does not parse: %v\ninput:\n%s\nformatted:\n%s", err, src, out)
		}
		if again := Format(ast2); !bytes.Equal(again, out) {
			t.Fatalf("fmt not idempotent:\n%s", cmp.Diff(string(out), string(again)))
		}
		if g == nil {
			return
		}
		g2, err := Parse("f", out)
		if err != nil {
			t.Fatalf("formatted script does not check: %v\ninput:\n%s\nformatted:\n%s", err, src, out)
		}
		if diff := cmp.Diff(summarize(g), summarize(g2)); diff != "" && !strings.Contains(diff, "cmd:") {
			t.Fatalf("formatting changed the graph:\n%s", diff)
		} else if diff != "" {
			t.Fatalf("formatting changed a command:\n%s\ninput:\n%s\nformatted:\n%s", diff, src, out)
		}
	})
}
