package diag

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/ipcflow/ipcflow/parser"
)

// The caret lines up under the column: tabs kept, other runes as one
// space each, a column past the end just after it.
func TestCaret(t *testing.T) {
	for _, c := range []struct {
		src  string
		col  int
		want string
	}{
		{"a -> b", 6, "a -> b\n     ^\n"},
		{"\t\tx", 3, "\t\tx\n\t\t^\n"},
		{"é -> b", 7, "é -> b\n     ^\n"},
		{"abc", 10, "abc\n   ^\n"},
		{"abc", 0, "abc\n^\n"},
		{"abc\r", 1, "abc\n^\n"},
		{"a\xffb", 3, "a\uFFFDb\n  ^\n"},
	} {
		if got := Caret(c.src, c.col, false); got != c.want {
			t.Errorf("Caret(%q, %d) = %q, want %q", c.src, c.col, got, c.want)
		}
	}
	if got, want := Caret("ab", 2, true), "ab\n \x1b[1;32m^\x1b[0m\n"; got != want {
		t.Errorf("coloured caret %q, want %q", got, want)
	}
}

// Print: a plain writer, or a Writer off a terminal in auto or never
// mode, gets the lines alone; always gets the source and carets, and
// leaves out what it cannot show (no position, a line past the file's
// end, a file that cannot be read).
func TestPrint(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f.ipcflow")
	if err := os.WriteFile(file, []byte("stage a = cat\na -> nope\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	list := parser.ErrorList{
		{File: file, Pos: parser.Pos{Line: 2, Col: 6}, Msg: "unknown stage nope"},
		{File: file, Msg: "no position"},
		{File: file, Pos: parser.Pos{Line: 9, Col: 1}, Msg: "past the end"},
		{File: filepath.Join(dir, "gone.ipcflow"), Pos: parser.Pos{Line: 1, Col: 1}, Msg: "gone"},
	}
	lines := file + ":2:6: unknown stage nope\n" + file + ": no position\n" + file + ":9:1: past the end\n" + dir + "/gone.ipcflow:1:1: gone\n"
	for _, mode := range []Mode{"", Auto, Never} {
		var b bytes.Buffer
		Print(&Writer{W: &b, Mode: mode}, list)
		if b.String() != lines {
			t.Errorf("mode %q off a terminal:\n%q\nwant\n%q", mode, b.String(), lines)
		}
	}
	var b bytes.Buffer
	Print(&b, list)
	if b.String() != lines {
		t.Errorf("plain writer:\n%q", b.String())
	}
	b.Reset()
	Print(&Writer{W: &b, Mode: Always}, list[:2])
	want := "\x1b[1m" + file + ":2:6:\x1b[0m unknown stage nope\na -> nope\n     \x1b[1;32m^\x1b[0m\n" +
		"\x1b[1m" + file + ":\x1b[0m no position\n"
	if b.String() != want {
		t.Errorf("always:\n%q\nwant\n%q", b.String(), want)
	}
}
