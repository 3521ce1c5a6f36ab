package movers

import (
	"io"
	"strings"
	"testing"
)

// chunks is a reader that returns its strings one per Read.
type chunks []string

func (c *chunks) Read(p []byte) (int, error) {
	if len(*c) == 0 {
		return 0, io.EOF
	}
	n := copy(p, (*c)[0])
	if (*c)[0] = (*c)[0][n:]; (*c)[0] == "" {
		*c = (*c)[1:]
	}
	return n, nil
}

// countWriter records each write.
type countWriter struct{ writes []string }

func (w *countWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, string(p))
	return len(p), nil
}

func TestCopyLabelled(t *testing.T) {
	long := strings.Repeat("x", labelBuf+10)
	for _, c := range []struct {
		in   []string
		want string
	}{
		{[]string{"one\ntwo\n"}, "a: one\na: two\n"},
		{[]string{"x\ny"}, "a: x\na: y\n"},
		{[]string{"par", "tial\n", "next"}, "a: partial\na: next\n"},
		{[]string{"\n\n"}, "a: \na: \n"},
		{[]string{long, "\nend\n"}, "a: " + long + "\na: end\n"},
		{nil, ""},
	} {
		src := chunks(c.in)
		var w countWriter
		if err := copyLabelled(&w, &src, []byte("a: ")); err != nil {
			t.Fatal(err)
		}
		got := strings.Join(w.writes, "")
		if got != c.want {
			t.Errorf("%.60q: got %.200q, want %.200q", c.in, got, c.want)
		}
		// Every write but a too-long line's start ends a line.
		for _, wr := range w.writes {
			if !strings.HasSuffix(wr, "\n") && len(wr) < labelBuf {
				t.Errorf("%.60q: a write ends mid-line: %.200q", c.in, wr)
			}
		}
	}
}
