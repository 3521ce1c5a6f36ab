package parser

import (
	"strings"
	"testing"

	"mvdan.cc/sh/v3/syntax"
)

func TestNeedsBash(t *testing.T) {
	for _, c := range []struct{ cmd, want string }{
		{"umask 077", "the umask builtin"},
		{"cat | { jobs; }", "the jobs builtin"},
		{"echo hi 3>&1 >&3", "redirection of fd 3"},
		{"echo hi >&4", ">&4 (fd 4)"},
		{"exec {fd}>/tmp/x", "redirection of fd {fd}"},
		{"printf -v x %s y", "printf -v"},
		{"read -t 1 x", "read -t"},
		{"read -rp 'a b' x", ""},
		{"read -r -u 3 x", "read -u"},
		{"wait -n", "wait -n"},
		{"trap 'echo' DEBUG", "trap on DEBUG"},
		// What the stage shell does itself, and plain commands.
		{"trap '' TERM; ulimit -n 64; kill -0 $$", ""},
		{"echo hi 2>&1 >/dev/null <&0", ""},
		{"$cmd -t", ""},
	} {
		f, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(c.cmd), "")
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if need := NeedsBash(f); need != nil {
			got = need.What
		}
		if got != c.want {
			t.Errorf("%q: %q, want %q", c.cmd, got, c.want)
		}
	}
}

// Warnings point at the construct in the file, across continuation lines.
func TestBashWarningPosition(t *testing.T) {
	src := "stage a = cat |\\\n  cat\nstage b = echo x |\n    umask\n"
	g, err := Parse("f.ipcflow", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	w := Warnings(g)
	if len(w) != 1 || !strings.HasPrefix(w[0].Error(), "f.ipcflow:4:5: warning: stage b: the umask builtin needs bash") {
		t.Errorf("warnings %v", w)
	}
}
