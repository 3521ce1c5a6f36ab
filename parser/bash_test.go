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
		// What the interpreter would run quietly wrong.
		{"false | true; echo ${PIPESTATUS[@]}", "PIPESTATUS"},
		{"echo ${x@Q}", "${…@Q}"},
		{"coproc cat", "coproc"},
		{"declare -i n; n=5+5", "declare -i"},
		{"local -u up=x", "local -u"},
		{`let "y = 3 * 4"`, "a quoted let expression"},
		{`printf "%q\n" "a b"`, "printf %q"},
		{`printf -- '%q' x`, "printf %q"},
		{"let i=2+3; declare -a arr=(1 2); printf '%s\n' x", ""},
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

func TestSemCycleWarnings(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		// Three users of two units in one chain: a and b can hold both
		// while c, which they feed, waits for one.
		{"sem s = 2\nstage a uses s = cat\nstage b uses s = cat\nstage c uses s = cat\na -> b -> c\n",
			"f.ipcflow:1:1: warning: semaphore s (count 2) is used by 3 stages joined by data edges (a, b, c): those holding its units can wait on data to or from one that waits for a unit, and the flow would hang (see docs/locks.md)"},
		// As many users as units, or users in separate parts: no warning.
		{"sem s = 3\nstage a uses s = cat\nstage b uses s = cat\nstage c uses s = cat\na -> b -> c\n", ""},
		{"sem s = 1\nstage a uses s = cat\nstage b uses s = cat\nstage c = cat\nstage d = cat\na -> c\nb -> d\n", ""},
		// Siblings of a fan-out are joined through their producer.
		{"sem s = 1\nstage a = cat\nstage b uses s = cat\nstage c uses s = cat\na -> {b, c}\n",
			"f.ipcflow:1:1: warning: semaphore s (count 1) is used by 2 stages joined by data edges (b, c): those holding its units can wait on data to or from one that waits for a unit, and the flow would hang (see docs/locks.md)"},
	} {
		g, err := Parse("f.ipcflow", []byte(c.src))
		if err != nil {
			t.Fatalf("%q: %v", c.src, err)
		}
		got := Warnings(g).Error()
		if got != c.want {
			t.Errorf("%q:\n got %s\nwant %s", c.src, got, c.want)
		}
	}
}
