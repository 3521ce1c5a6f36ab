package exec

import (
	osexec "os/exec"
	"testing"
)

// The stage shell ends by SIGPIPE when its last command did (status 141),
// as the program itself would have had it been exec'd directly.
func TestShellDiesOfSigpipe(t *testing.T) {
	for _, c := range []struct {
		cmd  string
		want string
	}{
		{"exit 141", "signal: broken pipe"},
		{"exit 3", "exit status 3"},
		{"true", ""},
	} {
		path, argv, err := shellCommand("s", 3, c.cmd)
		if err != nil {
			t.Fatal(err)
		}
		err = (&osexec.Cmd{Path: path, Args: argv}).Run()
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("%q: %q, want %q", c.cmd, got, c.want)
		}
	}
}
