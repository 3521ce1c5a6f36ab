package exec

import (
	"slices"
	"testing"
)

// The forked guardian parses ipcflow's lines with hand-written code (it
// may not allocate): only "done" and "watch PGID" with a plausible group
// count, whatever else comes.
func TestGuardianLines(t *testing.T) {
	c := &guardianChild{}
	feed := func(s string) bool {
		c.n = 0
		for i := 0; i < len(s); i++ {
			if c.n < len(c.line) {
				c.line[c.n] = s[i]
			}
			c.n++
		}
		return guardianLine(c)
	}
	for _, l := range []string{"watch 123", "watch 1", "watch 0", "watch -5", "watch 12x", "watch ", "watch", "wAtch 77",
		"watch 99999999999999999999", "watch 4" + string(make([]byte, 40)), "done!", "don", "", "watch 456"} {
		if feed(l) {
			t.Errorf("%q taken for done", l)
		}
	}
	if got, want := c.groups[:c.ng], []int32{123, 456}; !slices.Equal(got, want) {
		t.Errorf("groups %v, want %v", got, want)
	}
	if !feed("done") {
		t.Errorf("done not seen")
	}
}
