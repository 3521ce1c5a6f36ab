package parser

import (
	"strings"
	"testing"
)

// TestNestingBalanced: real commands nest little, and the scanner comes
// back to depth 0 after each: it does not count what is not nesting.
func TestNestingBalanced(t *testing.T) {
	for _, cmd := range []string{
		`tr -cs 'A-Za-z' '\n' < "$FILE" | sort | uniq -c | sort -rn`,
		`for f in *.txt; do echo "$f"; done`,
		`while read -r l; do case $l in a) echo a;; (b) echo b;; *) :;; esac; done`,
		`if [[ ! -f x && $(( n % 2 )) -eq 0 ]]; then echo "$(date) ${x:-$(pwd)}"; fi`,
		"echo `date` \"`id -u`\"",
		`awk '{ print $1 }' | sed -e 's/(x)/[\1]/g' -e "s/'//"`,
		`f() { g() { :; }; g; }; f # a comment with a ( and a don't`,
		`echo ')' '((' "}" \( \) x\{`,
		`time ! grep -q x; coproc cat; function h { :; }`,
		`for ((i = 0; i < 3; i++)); do echo $((i * 2)); done`,
		`cat <(sort a) >(wc -l) {a,b}.txt`,
		`ls *.[ch] && a[1]=x && echo ${a[1]} $((b[2] + c[d[3]])) [x]`,
	} {
		s := newNestScanner()
		if k := s.scan(cmd + "\n"); k >= 0 || s.depth != 0 {
			t.Errorf("%s: too deep at %d, depth %d after it, want 0", cmd, k, s.depth)
		}
	}
}

// TestNestingDeep: every way of nesting that overflowed mvdan.cc/sh's
// stack is caught before the parser sees it.
func TestNestingDeep(t *testing.T) {
	n := maxNesting + 2 // (( is one level of arithmetic, not two
	rep := strings.Repeat
	for name, text := range map[string]string{
		"subshells":      rep("(", n) + "true" + rep(")", n),
		"unclosed":       rep("(", n),
		"arithmetic":     "echo " + rep("$((", n) + "1" + rep("))", n),
		"arith parens":   "echo $((" + rep("(", n) + "1" + rep(")", n) + "))",
		"cmd subst":      rep("$(", n) + "x" + rep(")", n),
		"quoted closers": rep("$(echo ')' ", n) + "x" + rep(")", n),
		"dquoted":        rep(`"$(echo `, n) + "x" + rep(`)"`, n),
		"backquotes":     rep("\"`", n) + "x",
		"braces":         rep("{ ", n) + "true" + rep("; }", n),
		"param exp":      "echo " + rep("${a:-", n) + "x" + rep("}", n),
		"if":             rep("if true; then ", n) + "true" + rep("; fi", n),
		"while":          rep("while true; do ", n) + "true" + rep("; done", n),
		"case":           rep("case x in x) ", n) + "true" + rep(";; esac", n),
		"functions":      rep("f() ", n) + "true",
		"time":           rep("time ", n) + "true",
		"test not":       "[[ " + rep("! ", n) + "a ]]",
		"ternary":        "echo $(( " + rep("1?", n) + "1" + rep(":1", n) + " ))",
		"assign":         "echo $(( " + rep("a=", n) + "1 ))",
		"unary":          "echo $(( " + rep("- ", n) + "1 ))",
		"arith index":    "echo $((" + rep("a[", n) + "1" + rep("]", n) + "))",
		"assign index":   rep("a[", n) + "1" + rep("]", n) + "=1",
		"param index":    "echo ${x[" + rep("a[", n) + "1" + rep("]", n) + "]}",
	} {
		if k := newNestScanner().scan(text); k < 0 {
			t.Errorf("%s: not caught", name)
		}
	}
	// Line by line, as scanShell feeds it.
	s := newNestScanner()
	deep := false
	for i := 0; i < n && !deep; i++ {
		deep = s.scan("(\n") >= 0
	}
	if !deep {
		t.Errorf("( on each of %d lines: not caught", n)
	}
}
