package exec

import (
	"fmt"
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

// kill without procps: ipcflow's own role does what kill(1) would.
func TestKillRole(t *testing.T) {
	sleeper := osexec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	pid := fmt.Sprint(sleeper.Process.Pid)
	if code := killRole([]string{"-s", "USR1", pid}); code != 0 {
		t.Fatalf("kill -s USR1: status %d", code)
	}
	err := sleeper.Wait()
	if err == nil || err.Error() != "signal: user defined signal 1" {
		t.Errorf("sleep ended with %v, want SIGUSR1", err)
	}
	if code := killRole([]string{"-NOSUCH", pid}); code != 1 {
		t.Errorf("a bad signal name: status %d, want 1", code)
	}
}
