package exec

import (
	"slices"
	"strings"
	"testing"
)

// The guardian takes "done" and "watch PGID" lines with a plausible group,
// whatever else comes, and end of file without "done" is a crash.
func TestGuardianLines(t *testing.T) {
	in := "watch 123\nwatch 1\nwatch 0\nwatch -5\nwatch 12x\nwatch \nwatch\nwAtch 77\nwatch 99999999999999999999\ndone!\ndon\n\nwatch 456\n"
	groups, done := readGuardPipe(strings.NewReader(in))
	if done {
		t.Error("end of file taken for done")
	}
	if want := []int{123, 456}; !slices.Equal(groups, want) {
		t.Errorf("groups %v, want %v", groups, want)
	}
	if _, done := readGuardPipe(strings.NewReader(in + "done\nwatch 9\n")); !done {
		t.Error("done not seen")
	}
}
