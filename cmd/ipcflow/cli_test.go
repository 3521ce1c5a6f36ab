package main

import (
	"bytes"
	"errors"
	"os"
	osexec "os/exec"
	"strings"
	"testing"
)

// ipcflowCmd is the test binary started as ipcflow with args (lock_test.go's
// init makes it one).
func ipcflowCmd(t *testing.T, args ...string) *osexec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := osexec.Command(self, args...)
	cmd.Env = append(os.Environ(), asIpcflowEnv+"=1")
	return cmd
}

// run runs cmd and returns its stdout, stderr and exit status.
func run(t *testing.T, cmd *osexec.Cmd) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &out
	}
	cmd.Stderr = &errb
	err := cmd.Run()
	var ee *osexec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// The command line's conventions: help as a command, --version, a short
// usage for ipcflow alone, and the exit status of each.
func TestCommandLineConventions(t *testing.T) {
	help, _, code := run(t, ipcflowCmd(t, "--help"))
	if code != 0 || !strings.Contains(help, "help") || !strings.Contains(help, "--version") {
		t.Fatalf("--help: status %d\n%s", code, help)
	}
	if got, _, code := run(t, ipcflowCmd(t, "help")); code != 0 || got != help {
		t.Errorf("help: status %d, and not what --help prints:\n%s", code, got)
	}
	for _, cmd := range []string{"check", "run", "fmt"} {
		want, _, _ := run(t, ipcflowCmd(t, cmd, "--help"))
		if got, _, code := run(t, ipcflowCmd(t, "help", cmd)); code != 0 || got != want || want == help {
			t.Errorf("help %s: status %d, and not what %s --help prints:\n%s", cmd, code, cmd, got)
		}
	}
	version, _, code := run(t, ipcflowCmd(t, "version"))
	if got, _, c := run(t, ipcflowCmd(t, "--version")); code != 0 || c != 0 || got != version || !strings.HasPrefix(got, "ipcflow ") {
		t.Errorf("--version: %q (status %d), version: %q (status %d)", got, c, version, code)
	}
	// A variable left in the environment does not make every command
	// print the version.
	cmd := ipcflowCmd(t, "help")
	cmd.Env = append(cmd.Env, "IPCFLOW_VERSION=1")
	if got, _, _ := run(t, cmd); got != help {
		t.Errorf("IPCFLOW_VERSION=1 ipcflow help printed:\n%s", got)
	}
	for _, c := range []struct {
		args   []string
		stderr string
	}{
		{nil, "Usage: ipcflow <command> [flags]\n       ipcflow FILE [NAME=VALUE...]    (ipcflow run FILE ..., for #! lines)\n" +
			"Run 'ipcflow --help' for the commands, 'ipcflow help COMMAND' for one.\n"},
		{[]string{"-v"}, "ipcflow: unknown flag -v"},
		{[]string{"help", "chek"}, `ipcflow: chek is neither a command nor a file (did you mean "check"?)` + "\n"},
	} {
		out, errs, code := run(t, ipcflowCmd(t, c.args...))
		if code != 2 || out != "" || !strings.HasPrefix(errs, c.stderr) {
			t.Errorf("ipcflow %q: status %d, stdout %q, stderr %q; want 2, nothing, %q", c.args, code, out, errs, c.stderr)
		}
	}
}

// Help and version are read by people and by `| head -1`: a reader that
// has gone (the pipe's read end closed) or a closed stdout is no error.
func TestInfoWithoutAReader(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"help", "run"}, {"check", "-h"}, {"version"}, {"--version"}} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
		cmd := ipcflowCmd(t, args...)
		cmd.Stdout = w
		_, errs, code := run(t, cmd)
		w.Close()
		if code != 0 || errs != "" {
			t.Errorf("ipcflow %q into a pipe nobody reads: status %d, stderr %q", args, code, errs)
		}
		closed := osexec.Command("sh", append([]string{"-c", `"$0" "$@" >&-`, cmd.Path}, args...)...)
		closed.Env = cmd.Env
		if _, errs, code := run(t, closed); code != 0 || errs != "" {
			t.Errorf("ipcflow %q >&-: status %d, stderr %q", args, code, errs)
		}
	}
}
